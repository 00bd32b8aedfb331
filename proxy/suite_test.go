package proxy

import (
	"testing"

	"github.com/pgtestproxy/pgtestproxy/internal/leasemode"
)

// The behavioural suite: tests of what a client sees that must hold in every lease
// mode (db mode's relay and tx mode's rewriting session alike) run each case under
// forEachMode, in the way golang-migrate's drivers share one suite; the tests of one
// mode only say which and why.

// leaseModes are the modes the shared suite runs in.
var leaseModes = []leasemode.Mode{leasemode.DB, leasemode.Tx}

// forEachMode runs f as a parallel subtest per lease mode.
func forEachMode(t *testing.T, f func(t *testing.T, mode leasemode.Mode)) {
	t.Helper()
	for _, mode := range leaseModes {
		t.Run(string(mode), func(t *testing.T) {
			t.Parallel()
			f(t, mode)
		})
	}
}

// modeURL is a client URL for database db through s in the given mode.
func modeURL(s *Server, mode leasemode.Mode, db string, query ...string) string {
	return proxyURL(s, db, append([]string{"mode=" + string(mode)}, query...)...)
}
