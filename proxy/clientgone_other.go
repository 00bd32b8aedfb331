//go:build !linux

package proxy

import (
	"context"
	"net"
)

// watchGone is the Linux watch (clientgone_linux.go) elsewhere: it does not watch.
func watchGone(parent context.Context, _ net.Conn) (context.Context, func() bool) {
	ctx, cancel := context.WithCancel(parent)
	return ctx, func() bool { cancel(); return false }
}
