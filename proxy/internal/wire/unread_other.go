//go:build !unix

package wire

import "net"

// Unread cannot peek at a socket here: it reports neither, and the checks it serves
// are skipped.
func Unread(net.Conn) (data, closed bool) { return false, false }
