package wire

import (
	"context"
	"net"
	"os"
	"sync"
	"time"
)

// handoverConn is an upstream socket while pgconn starts the connection on it. When a
// write takes pgconn longer than 15 ms it starts a background reader, and stops it only
// after that reader's Read in progress returns: if the server answered before the
// write returned, the reader took the answer and read again, and that Read is still
// blocked on the socket when the proxy takes the connection over (Hijack). The next
// bytes the server sent, the reply to the first query the proxy relays, went to it and
// were lost. handover ends such a Read and keeps whatever it got for the new owner.
type handoverConn struct {
	net.Conn
	mu      sync.Mutex
	idle    sync.Cond // signalled when a Read of pgconn's ends
	reads   int       // Reads of pgconn's in progress
	handed  bool      // the connection is the proxy's: a Read in progress is pgconn's, stale
	pending []byte    // what a stale Read got, for the proxy's next Read
}

// dialHandover wraps dial so that the last connection it made can be handed over.
func dialHandover(dial func(ctx context.Context, network, addr string) (net.Conn, error)) (
	func(ctx context.Context, network, addr string) (net.Conn, error), func() *handoverConn) {
	var mu sync.Mutex
	var last *handoverConn
	wrapped := func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := dial(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		h := &handoverConn{Conn: c}
		h.idle.L = &h.mu
		mu.Lock()
		last = h
		mu.Unlock()
		return h, nil
	}
	return wrapped, func() *handoverConn {
		mu.Lock()
		defer mu.Unlock()
		return last
	}
}

func (c *handoverConn) Read(p []byte) (int, error) {
	c.mu.Lock()
	if c.handed {
		if len(c.pending) > 0 {
			n := copy(p, c.pending)
			c.pending = c.pending[n:]
			c.mu.Unlock()
			return n, nil
		}
		c.mu.Unlock()
		return c.Conn.Read(p)
	}
	c.reads++
	c.mu.Unlock()
	n, err := c.Conn.Read(p)
	c.mu.Lock()
	defer c.mu.Unlock()
	c.reads--
	c.idle.Broadcast()
	if c.handed {
		// Stale: the bytes are the proxy's. A timeout (not a permanent error) stops
		// pgconn's reader without breaking a TLS layer above this socket.
		c.pending = append(c.pending, p[:n]...)
		return 0, os.ErrDeadlineExceeded
	}
	return n, err
}

// released returns the socket the proxy reads from now: conn itself, where it is this
// handoverConn, is the bare socket when no stale Read left bytes to hand on, so that
// the relay's reads take no lock; conn is returned as it is otherwise (a TLS layer
// above this socket, or bytes pending).
func (c *handoverConn) released(conn net.Conn) net.Conn {
	c.mu.Lock()
	defer c.mu.Unlock()
	if conn == net.Conn(c) && len(c.pending) == 0 {
		return c.Conn
	}
	return conn
}

// hasPending reports whether a stale Read got something the proxy has not read yet.
func (c *handoverConn) hasPending() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.pending) > 0
}

// handover makes the connection the proxy's: a Read of pgconn's still in progress is
// ended (a read deadline in the past) and what it got is kept for the proxy's reads.
func (c *handoverConn) handover() error {
	c.mu.Lock()
	c.handed = true
	stale := c.reads > 0
	c.mu.Unlock()
	if !stale {
		return nil
	}
	if err := c.Conn.SetReadDeadline(time.Now()); err != nil {
		return err
	}
	c.mu.Lock()
	for c.reads > 0 {
		c.idle.Wait()
	}
	c.mu.Unlock()
	return c.Conn.SetReadDeadline(time.Time{})
}
