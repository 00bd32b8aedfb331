package proxy

import (
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/pgtestproxy/pgtestproxy/internal/leasemode"
)

// On a shared tx-mode session key, a connection's SQL DEALLOCATE of a statement it
// prepared through the protocol deallocates it (in both protocols), and its DEALLOCATE
// ALL deallocates its own statements, not the other connections', as on a plain
// server where each connection has its own.
func TestTxSharedDeallocate(t *testing.T) {
	t.Parallel()
	s := startProxy(t, Config{Provider: newTestProvider(t)})
	url := modeURL(s, leasemode.Tx, "app", "session=dealloc")
	a, b := connect(t, url), connect(t, url)
	ctx := testContext(t)
	run := func(c *pgx.Conn, name string) error {
		t.Helper()
		return c.PgConn().ExecPrepared(ctx, name, [][]byte{[]byte("x")}, nil, nil).Read().Err
	}
	for _, c := range []*pgx.Conn{a, b} {
		for _, name := range []string{"ps", "ps2"} {
			if _, err := c.Prepare(ctx, name, "SELECT $1::text"); err != nil {
				t.Fatal(err)
			}
		}
	}

	// DEALLOCATE name, simple protocol and extended.
	if _, err := a.Exec(ctx, "DEALLOCATE ps", pgx.QueryExecModeSimpleProtocol); err != nil {
		t.Fatalf("a's DEALLOCATE ps (simple): %v", err)
	}
	if _, err := a.Exec(ctx, "DEALLOCATE PREPARE ps2", pgx.QueryExecModeExec); err != nil {
		t.Fatalf("a's DEALLOCATE PREPARE ps2 (extended): %v", err)
	}
	e := wantSQLState(t, run(a, "ps"), "26000")
	if e.Message != `prepared statement "ps" does not exist` {
		t.Fatalf("a's deallocated ps: %q", e.Message)
	}
	wantSQLState(t, run(a, "ps2"), "26000")
	for _, name := range []string{"ps", "ps2"} {
		if err := run(b, name); err != nil {
			t.Fatalf("b's %s after a's DEALLOCATE: %v", name, err)
		}
	}

	// DEALLOCATE ALL.
	if _, err := a.Prepare(ctx, "ps3", "SELECT $1::text"); err != nil {
		t.Fatal(err)
	}
	tag, err := b.Exec(ctx, "DEALLOCATE ALL", pgx.QueryExecModeSimpleProtocol)
	if err != nil || tag.String() != "DEALLOCATE ALL" {
		t.Fatalf("b's DEALLOCATE ALL: %q, %v", tag, err)
	}
	wantSQLState(t, run(b, "ps"), "26000")
	if err := run(a, "ps3"); err != nil {
		t.Fatalf("a's ps3 after b's DEALLOCATE ALL: %v", err)
	}
	if _, err := b.Prepare(ctx, "ps", "SELECT $1::text || 'b'"); err != nil {
		t.Fatalf("b prepares ps again: %v", err)
	}
	if err := run(b, "ps"); err != nil {
		t.Fatal(err)
	}
}
