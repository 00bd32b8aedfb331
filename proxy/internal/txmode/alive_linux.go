package txmode

import (
	"errors"
	"net"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/pgtestproxy/pgtestproxy/proxy/internal/wire"
)

// alive reports whether a kept backend still looks fit between two leases, before a
// lease's start is sent without waiting for it (startahead.go): nothing waits to be
// read from it (a server that ends a connection, on idle_session_timeout or
// pg_terminate_backend, sends a FATAL first) and its socket is neither closed nor
// reset. It costs one peek that does not wait. A backend that is not alive is started
// the slow way, whose failure opens a fresh backend for the lease.
func (b *Backend) alive() bool {
	if b.rd.buffered() {
		return false
	}
	var c net.Conn = b.conn
	if oc, ok := c.(*wire.OnceConn); ok {
		c = oc.Conn
	}
	sc, ok := c.(syscall.Conn)
	if !ok {
		return true // a socket the proxy cannot peek at: the start finds out
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	alive := false
	err = rc.Read(func(fd uintptr) bool {
		var p [1]byte
		_, _, err := unix.Recvfrom(int(fd), p[:], unix.MSG_PEEK|unix.MSG_DONTWAIT)
		// Nothing to read is the one good answer; bytes, the end of the stream or an
		// error all say the backend is done.
		alive = errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR)
		return true
	})
	return err == nil && alive
}
