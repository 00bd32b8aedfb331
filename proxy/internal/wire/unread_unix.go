//go:build unix

package wire

import (
	"errors"
	"net"
	"syscall"
)

// Unread reports what conn's socket holds that nobody has read yet: data (bytes), or
// closed (the end of the stream, or an error). It takes nothing from the socket and
// never waits. It peeks under Control, not Read, so a Read in progress on the socket
// (a session's pump) does not hold it up. conn may be a OnceConn or a TLS connection
// (whose socket it peeks); a conn that is not a socket reports neither.
func Unread(conn net.Conn) (data, closed bool) {
	for {
		switch c := conn.(type) {
		case *OnceConn:
			conn = c.Conn
			continue
		case *handoverConn: // what pgconn's stale Read got is unread too
			if c.hasPending() {
				return true, false
			}
			conn = c.Conn
			continue
		case interface{ NetConn() net.Conn }: // TLS: a record waiting is input too
			conn = c.NetConn()
			continue
		}
		break
	}
	sc, ok := conn.(syscall.Conn)
	if !ok {
		return false, false
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return false, false
	}
	var b [1]byte
	_ = rc.Control(func(fd uintptr) {
		n, _, err := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		data = n > 0
		closed = (n == 0 && err == nil) || (err != nil && !errors.Is(err, syscall.EAGAIN) && !errors.Is(err, syscall.EINTR))
	})
	return data, closed
}
