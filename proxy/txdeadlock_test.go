package proxy

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgtestproxy/pgtestproxy/internal/leasemode"
	"github.com/pgtestproxy/pgtestproxy/internal/testpg"
)

// A connection of a shared session key that waits for its turn while another
// connection's transaction block holds the backend, idle, fails with 40P01 after the
// server's deadlock_timeout (ten of them) instead of waiting forever (the other connection may well
// be waiting for it), in both protocols; the block's connection goes on. A block busy
// running a statement meanwhile is no deadlock: the waiter runs after it.
func TestTxSharedDeadlock(t *testing.T) {
	t.Parallel()
	s := startProxy(t, Config{Provider: newTestProvider(t)})
	url := modeURL(s, leasemode.Tx, "app", "session=deadlock", "deadlock_timeout=100ms")
	a, b := connect(t, url), connect(t, url)
	bounded := func() context.Context {
		ctx, cancel := context.WithTimeout(testContext(t), 20*time.Second)
		t.Cleanup(cancel)
		return ctx
	}
	wantDeadlock := func(what string, err error) {
		t.Helper()
		e := wantSQLState(t, err, "40P01")
		if !strings.Contains(e.Detail, "another connection of the key") || !strings.Contains(e.Detail, "waited 1s") {
			t.Fatalf("%s: detail %q does not name the cause", what, e.Detail)
		}
	}

	// A's block holds a row lock B's statement needs; A waits for B before it commits.
	mustExec(t, a, "BEGIN")
	mustExec(t, a, "UPDATE items SET name = 'a' WHERE id = 1")
	_, err := b.Exec(bounded(), "UPDATE items SET name = 'b' WHERE id = 1") // simple protocol
	wantDeadlock("simple protocol", err)
	_, err = b.Exec(bounded(), "UPDATE items SET name = $1 WHERE id = 1", "b") // extended protocol
	wantDeadlock("extended protocol", err)
	mustExec(t, a, "COMMIT")
	var name string
	if err := b.QueryRow(bounded(), "SELECT name FROM items WHERE id = $1", 1).Scan(&name); err != nil || name != "a" {
		t.Fatalf("after the deadlock: %q, %v; want a's committed row", name, err)
	}

	// B's block waits for A's work, which waits for its turn.
	mustExec(t, b, "BEGIN")
	_, err = a.Exec(bounded(), "INSERT INTO items VALUES (4, 'four')")
	wantDeadlock("waiting for a block", err)
	mustExec(t, b, "INSERT INTO items VALUES (5, 'five')")
	mustExec(t, b, "COMMIT")

	// A block that runs a statement longer than the wait (ten deadlock_timeouts) keeps its turn; the
	// waiter runs once it ends.
	db := currentDatabase(t, a)
	mustExec(t, a, "BEGIN")
	done := make(chan error, 1)
	go func() {
		_, err := a.Exec(bounded(), "SELECT pg_sleep(1.5); COMMIT")
		done <- err
	}()
	admin, err := pgx.Connect(bounded(), testpg.AdminURL(t))
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close(context.Background())
	waitFor(t, "the block's statement to run", func() bool {
		var n int
		_ = admin.QueryRow(bounded(), "SELECT count(*) FROM pg_stat_activity WHERE datname = $1 AND state = 'active' AND query LIKE '%pg_sleep(1.5)%'",
			db).Scan(&n)
		return n > 0
	})
	var n int
	if err := b.QueryRow(bounded(), "SELECT count(*) FROM items").Scan(&n); err != nil || n != 4 {
		t.Fatalf("waiting for a busy block: %d rows, %v; want 4", n, err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
