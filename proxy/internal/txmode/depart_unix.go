//go:build unix

package txmode

import (
	"errors"
	"net"
	"syscall"

	"github.com/pgtestproxy/pgtestproxy/proxy/internal/wire"
)

// inputWaiting reports whether the client's socket has something the proxy has not
// read yet: bytes, or the end of the stream (a client that closed). It takes nothing
// from the socket and never waits.
func inputWaiting(conn net.Conn) bool {
	for {
		switch c := conn.(type) {
		case interface{ NetConn() net.Conn }: // TLS: a record waiting is input too
			conn = c.NetConn()
			continue
		case *wire.OnceConn:
			conn = c.Conn
			continue
		}
		break
	}
	sc, ok := conn.(syscall.Conn)
	if !ok {
		return false
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	waiting := false
	var b [1]byte
	// Control, not Read: the session's pump may be blocked in a Read of the socket,
	// which holds the read lock Read would wait for.
	_ = rc.Control(func(fd uintptr) {
		n, _, err := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		waiting = n > 0 || (n == 0 && err == nil) || (err != nil && !errors.Is(err, syscall.EAGAIN) && !errors.Is(err, syscall.EINTR))
	})
	return waiting
}
