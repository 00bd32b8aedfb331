package wire

import (
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"time"
)

// OnceConn is a socket whose Close closes it exactly once, whoever calls it first
// (the session that owns it or a shutdown that force-closes it).
type OnceConn struct {
	net.Conn
	once sync.Once
	err  error
}

func NewOnceConn(c net.Conn) *OnceConn { return &OnceConn{Conn: c} }

func (c *OnceConn) Close() error {
	c.once.Do(func() { c.err = c.Conn.Close() })
	return c.err
}

// CloseWrite half-closes the socket when it supports that (TCP, Unix).
func (c *OnceConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

// CloseWrite half-closes c: a TCP FIN, or a TLS close_notify.
func CloseWrite(c net.Conn) {
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		_ = cw.CloseWrite()
	}
}

// Interrupt makes a Read blocked on c (or the next one) return at once.
func Interrupt(c net.Conn) { _ = c.SetReadDeadline(time.Now()) }

// IsInterrupted reports whether err is what Interrupt causes.
func IsInterrupted(err error) bool { return errors.Is(err, os.ErrDeadlineExceeded) }

// Bounds on the polite goodbyes to a client that is being refused or cut.
const (
	GoodbyeWriteTimeout = 2 * time.Second
	goodbyeDrainTimeout = 500 * time.Millisecond
	goodbyeDrainBytes   = 64 << 10
)

// LingeringClose closes c after a refusal so that an ErrorResponse just written is not
// lost to a TCP reset: it half-closes, reads what the client still sends for a
// moment, then closes.
func LingeringClose(c net.Conn) {
	CloseWrite(c)
	_ = c.SetReadDeadline(time.Now().Add(goodbyeDrainTimeout))
	_, _ = io.CopyN(io.Discard, c, goodbyeDrainBytes)
	_ = c.Close()
}
