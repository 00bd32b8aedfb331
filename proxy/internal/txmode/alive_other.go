//go:build !linux

package txmode

// alive is the Linux check (alive_linux.go) elsewhere: only what the proxy read.
func (b *Backend) alive() bool { return !b.rd.buffered() }
