package proxy

import (
	"net"
	"os"
	"strings"
	"testing"

	"github.com/jackc/pgerrcode"
	"github.com/jackc/pgx/v5"

	"github.com/pgtestproxy/pgtestproxy/internal/leasemode"
	"github.com/pgtestproxy/pgtestproxy/internal/pgerr"
)

// An error of a lease's own step that ran out of time reaches the client with its own
// SQLSTATE and message, although its cause is a socket deadline: only the client's own
// start-up deadline is the start-up timeout, which PostgreSQL answers by closing.
func TestRefuseStepDeadlineIsNotStartupTimeout(t *testing.T) {
	t.Parallel()
	p := newTestProvider(t)
	deadline := &net.OpError{Op: "read", Net: "tcp", Err: os.ErrDeadlineExceeded}
	p.acquireErr = pgerr.Wrap(pgerrcode.ConnectionFailure, "pgtestproxy could not start the tx lease on clone c within 1s", deadline)
	s := startProxy(t, Config{Provider: p})
	for _, mode := range []leasemode.Mode{leasemode.Tx, leasemode.DB} {
		_, err := pgx.Connect(testContext(t), modeURL(s, mode, "app"))
		if e := wantSQLState(t, err, pgerrcode.ConnectionFailure); !strings.Contains(e.Message, "within 1s") {
			t.Fatalf("%s: message %q, want the step's", mode, e.Message)
		}
	}
}
