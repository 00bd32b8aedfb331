//go:build !linux

package migrations

// guard is the change guard, which only Linux has (watch_linux.go): elsewhere a Dir is
// listed on every Hash.
type guard struct{}

func newGuard(string) *guard         { return nil }
func (g *guard) add(string) bool     { return false }
func (g *guard) changed() bool       { return true }
func (g *guard) close()              {}
func addFiles(string, []string) bool { return false }
