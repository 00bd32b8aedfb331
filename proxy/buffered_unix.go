//go:build unix

package proxy

import (
	"net"
	"syscall"

	"github.com/pgtestproxy/pgtestproxy/proxy/internal/wire"
)

// buffered reports whether the client has sent bytes the proxy has not read yet,
// without reading them or waiting for any.
func buffered(conn net.Conn) bool {
	if oc, ok := conn.(*wire.OnceConn); ok {
		conn = oc.Conn
	}
	sc, ok := conn.(syscall.Conn)
	if !ok {
		return false
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	var n int
	var b [1]byte
	_ = rc.Read(func(fd uintptr) bool {
		n, _, _ = syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		return true
	})
	return n > 0
}
