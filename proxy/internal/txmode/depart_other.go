//go:build !unix

package txmode

import "net"

// inputWaiting cannot peek at a socket here: a reconnect does not wait for the
// previous connection's Terminate (Lease.Attach).
func inputWaiting(net.Conn) bool { return false }
