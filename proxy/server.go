package proxy

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/pgtestproxy/pgtestproxy/internal/leasemode"
	"github.com/pgtestproxy/pgtestproxy/proxy/internal/wire"
)

// ErrServerClosed is returned by Serve after Close.
var ErrServerClosed = errors.New("proxy: server closed")

// forceCloseAfter is how long cut sessions get to say goodbye before their sockets
// are closed under them.
const forceCloseAfter = 3 * time.Second

// Server accepts PostgreSQL clients and gives each one a leased database.
type Server struct {
	cfg     Config
	ln      net.Listener
	log     *zap.Logger
	auth    *authenticator // nil: trust
	runners map[leasemode.Mode]runner
	cancels *cancelRegistry
	stats   counters
	leases  *leaseBook
	guard   *wire.Guard // contains the panics of every session goroutine
	roles   roles

	// baseCtx bounds the work done for sessions (lease acquisition, upstream
	// connects); it is cancelled when shutdown cuts the sessions.
	baseCtx    context.Context
	cancelBase context.CancelFunc
	shutting   atomic.Bool

	mu           sync.Mutex
	serving      bool
	closed       bool
	conns        map[*clientConn]struct{}
	connsChanged chan struct{} // closed and replaced whenever a connection ends
	cutAll       bool          // shutdown cut the sessions: cut new connections too
	sessions     int           // sessions past startup, for MaxSessions
	admins       atomic.Int32  // admin console sessions, for maxAdminSessions

	closeOnce sync.Once
	closeCh   chan struct{} // closed by Close
	doneCh    chan struct{} // closed when Serve has shut down
}

// New validates cfg and starts listening; clients may connect as soon as it returns
// (they wait in the listen backlog until Serve). Addr tells where.
func New(cfg Config) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	s := &Server{cfg: cfg, log: cfg.Logger, cancels: newCancelRegistry(),
		conns: map[*clientConn]struct{}{}, connsChanged: make(chan struct{}),
		closeCh: make(chan struct{}), doneCh: make(chan struct{}), leases: newLeaseBook()}
	s.guard = &wire.Guard{Log: s.log, Stats: &s.stats, Hook: cfg.panicHook}
	s.runners = map[leasemode.Mode]runner{leasemode.DB: newDBRunner(s), leasemode.Tx: newTxRunner(s)}
	if cfg.Password != "" {
		var err error
		if s.auth, err = newAuthenticator(cfg.Password); err != nil {
			return nil, err
		}
	}
	s.ln = cfg.Listener
	if s.ln == nil {
		var err error
		// No keepalives by default: acceptLoop turns them on for clients that are not
		// on this machine (see clientKeepAlive).
		lc := net.ListenConfig{KeepAlive: -1}
		if s.ln, err = lc.Listen(context.Background(), "tcp", cfg.Addr); err != nil {
			return nil, fmt.Errorf("listen on %s: %w", cfg.Addr, err)
		}
	}
	s.baseCtx, s.cancelBase = context.WithCancel(context.Background())
	return s, nil
}

// Addr returns the address the server listens on.
func (s *Server) Addr() net.Addr { return s.ln.Addr() }

// Stats returns the server's counters.
func (s *Server) Stats() Stats { return snapshot(&s.stats) }

// Serve accepts clients until ctx is done or Close is called, then shuts down
// gracefully: new clients are refused with 57P01, open sessions get ShutdownGrace to
// end, the rest are cut. It returns nil after a shutdown it performed, or
// ErrServerClosed when the server was closed before Serve was called.
func (s *Server) Serve(ctx context.Context) error {
	s.mu.Lock()
	if s.closed || s.serving {
		s.mu.Unlock()
		return ErrServerClosed
	}
	s.serving = true
	s.mu.Unlock()
	s.log.Info("proxy listening", zap.Stringer("addr", s.ln.Addr()))

	acceptDone := make(chan struct{})
	go func() {
		defer close(acceptDone)
		s.acceptLoop()
	}()
	select {
	case <-ctx.Done():
	case <-s.closeCh:
	}
	s.shutdown(acceptDone)
	close(s.doneCh)
	return nil
}

// Close shuts the server down as Serve does and waits until it has. It is safe to
// call more than once and from several goroutines.
func (s *Server) Close() error {
	s.closeOnce.Do(func() { close(s.closeCh) })
	s.mu.Lock()
	serving := s.serving
	first := !s.closed
	s.closed = true
	s.mu.Unlock()
	if serving {
		<-s.doneCh
		return nil
	}
	if first {
		s.cancelBase()
		return s.ln.Close()
	}
	return nil
}

func (s *Server) acceptLoop() {
	for {
		c, err := s.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// Out of file descriptors or similar: back off instead of spinning.
			s.log.Warn("accept failed", zap.Error(err))
			time.Sleep(50 * time.Millisecond)
			continue
		}
		clientKeepAlive(c)
		cc := s.track(c)
		go s.serveConn(cc)
	}
}

// clientKeepAlive turns TCP keepalives on for a client on another machine, so a lease
// whose client vanished without a FIN (a crashed host, a cut network) ends. A client on
// this machine needs none: its kernel closes the socket when its process goes. That
// saves four setsockopt calls per connection on the path every test takes, which the
// bench's connection-per-test rows count.
func clientKeepAlive(c net.Conn) {
	tc, ok := c.(*net.TCPConn)
	if !ok {
		return
	}
	if a, ok := tc.RemoteAddr().(*net.TCPAddr); ok && a.IP.IsLoopback() {
		return
	}
	_ = tc.SetKeepAliveConfig(net.KeepAliveConfig{Enable: true, Idle: 15 * time.Second, Interval: 15 * time.Second, Count: 9})
}
