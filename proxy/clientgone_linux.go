package proxy

import (
	"context"
	"errors"
	"net"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// watchGone returns a context that ends when the client on c leaves (its stream ends)
// while the proxy makes it wait in silence, as it does while a lease is acquired, so
// that the wait and what the pool builds for it stop with the client. stop ends the
// watch and reports whether the client left. The watch peeks at the socket and takes
// nothing from it; a client that sends something early ends the watch.
func watchGone(parent context.Context, c net.Conn) (ctx context.Context, stop func() (gone bool)) {
	ctx, cancel := context.WithCancel(parent)
	sc, ok := c.(syscall.Conn)
	var rc syscall.RawConn
	var err error
	if ok {
		rc, err = sc.SyscallConn()
	}
	if !ok || err != nil {
		return ctx, func() bool { cancel(); return false }
	}
	var left atomic.Bool
	done := make(chan struct{})
	go func() {
		defer close(done)
		var b [1]byte
		_ = rc.Read(func(fd uintptr) bool {
			n, _, err := unix.Recvfrom(int(fd), b[:], unix.MSG_PEEK|unix.MSG_DONTWAIT)
			if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR) {
				return false // nothing yet: wait until the socket is readable
			}
			if n == 0 || err != nil { // end of stream or a reset
				left.Store(true)
				cancel()
			}
			return true
		})
	}()
	return ctx, func() bool {
		_ = c.SetReadDeadline(time.Now()) // wakes the peek
		<-done
		_ = c.SetReadDeadline(time.Time{})
		cancel()
		return left.Load()
	}
}
