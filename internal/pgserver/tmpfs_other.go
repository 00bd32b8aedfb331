//go:build !linux

package pgserver

// tmpfsFree reports the free bytes of dir when it is a tmpfs. Only Linux has /dev/shm
// as a tmpfs the launcher looks for; elsewhere the data goes to the user cache dir.
func tmpfsFree(string) (uint64, bool) { return 0, false }
