package proxy

import (
	"net"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/pgtestproxy/pgtestproxy/proxy/internal/wire"
)

// clientConn is one accepted connection, tracked so that shutdown can cut it.
type clientConn struct {
	raw *wire.OnceConn

	mu       sync.Mutex
	cutting  bool
	runner   cutter   // what runs the session once it is established
	upstream net.Conn // set with a relay, for force-closing

	// leave frees the session's MaxSessions slot, once: when its client has left,
	// before the proxy ends its lease.
	leave func()
}

// cutter is a session runner that shutdown can end from outside.
type cutter interface{ Cut() }

// cut ends the connection from outside: whatever reads from the client returns at
// once and says goodbye with 57P01 when it can.
func (c *clientConn) cut() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.cutting = true
	if c.runner != nil {
		c.runner.Cut()
		return
	}
	wire.Interrupt(c.raw)
	_ = c.raw.SetWriteDeadline(time.Now().Add(wire.GoodbyeWriteTimeout))
}

func (c *clientConn) isCutting() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.cutting
}

// setRunner installs the session's runner; when the connection was cut already, the
// runner is cut at once.
func (c *clientConn) setRunner(r cutter, upstream net.Conn) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.runner, c.upstream = r, upstream
	if c.cutting {
		r.Cut()
	}
}

// forceClose closes the connection's sockets under whatever uses them.
func (c *clientConn) forceClose() {
	c.mu.Lock()
	up := c.upstream
	c.mu.Unlock()
	_ = c.raw.Close()
	if up != nil {
		_ = up.Close()
	}
}

func (s *Server) track(c net.Conn) *clientConn {
	cc := &clientConn{raw: wire.NewOnceConn(c)}
	s.mu.Lock()
	s.conns[cc] = struct{}{}
	cut := s.cutAll
	s.mu.Unlock()
	if cut {
		cc.cut()
	}
	return cc
}

func (s *Server) untrack(cc *clientConn) {
	s.mu.Lock()
	delete(s.conns, cc)
	close(s.connsChanged)
	s.connsChanged = make(chan struct{})
	s.mu.Unlock()
}

// waitConns waits until no connection is open or timeout passes (timeout < 0: no
// limit) and reports whether none is.
func (s *Server) waitConns(timeout time.Duration) bool {
	var expired <-chan time.Time
	if timeout >= 0 {
		t := time.NewTimer(timeout)
		defer t.Stop()
		expired = t.C
	}
	for {
		s.mu.Lock()
		n, changed := len(s.conns), s.connsChanged
		s.mu.Unlock()
		if n == 0 {
			return true
		}
		select {
		case <-changed:
		case <-expired:
			return false
		}
	}
}

// eachConn calls f for every open connection and returns how many there were.
func (s *Server) eachConn(f func(*clientConn)) int {
	s.mu.Lock()
	conns := make([]*clientConn, 0, len(s.conns))
	for cc := range s.conns {
		conns = append(conns, cc)
	}
	s.mu.Unlock()
	for _, cc := range conns {
		f(cc)
	}
	return len(conns)
}

// shutdown refuses new sessions, waits ShutdownGrace for open ones, cuts the rest
// (and force-closes what does not end), stops accepting, and releases every lease.
func (s *Server) shutdown(acceptDone <-chan struct{}) {
	s.shutting.Store(true)
	s.mu.Lock()
	open := len(s.conns)
	s.mu.Unlock()
	s.log.Info("proxy shutting down", zap.Int("connections", open), zap.Duration("grace", s.cfg.ShutdownGrace))
	if !s.waitConns(s.cfg.ShutdownGrace) {
		s.mu.Lock()
		s.cutAll = true
		s.mu.Unlock()
		s.cancelBase()
		n := s.eachConn((*clientConn).cut)
		s.log.Warn("shutdown grace over: cut open connections", zap.Int("connections", n))
		if !s.waitConns(forceCloseAfter) {
			n := s.eachConn((*clientConn).forceClose)
			s.log.Warn("force-closed connections that did not end", zap.Int("connections", n))
		}
	}
	_ = s.ln.Close()
	<-acceptDone
	s.waitConns(-1)
	s.cancelBase()
	for _, r := range s.runners {
		r.close()
	}
	s.log.Info("proxy stopped")
}
