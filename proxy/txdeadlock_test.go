package proxy

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/pgtestproxy/pgtestproxy/internal/leasemode"
	"github.com/pgtestproxy/pgtestproxy/internal/testpg"
)

// A connection of a shared session key that waits for its turn while another
// connection's transaction block holds the backend, idle, is not left waiting forever
// (the other connection may well be waiting for it): after ten of the server's
// deadlock_timeouts the idle block's connection is the victim, with FATAL 40P01, its
// block rolled back, and the waiter's statement runs, in both protocols. A block busy
// running a statement meanwhile is no deadlock: the waiter runs after it.
func TestTxSharedDeadlock(t *testing.T) {
	t.Parallel()
	s := startProxy(t, Config{Provider: newTestProvider(t)})
	url := modeURL(s, leasemode.Tx, "app", "session=deadlock", "deadlock_timeout=100ms")
	bounded := func() context.Context {
		ctx, cancel := context.WithTimeout(testContext(t), 20*time.Second)
		t.Cleanup(cancel)
		return ctx
	}
	// wantVictim checks that the idle block's connection was ended for the deadlock.
	wantVictim := func(what string, victim *rawSession) {
		t.Helper()
		_ = victim.conn.SetReadDeadline(time.Now().Add(10 * time.Second))
		msg, err := victim.fe.Receive()
		e, ok := msg.(*pgproto3.ErrorResponse)
		if err != nil || !ok {
			t.Fatalf("%s: the idle block's connection got %T, %v; want FATAL 40P01", what, msg, err)
		}
		if e.Severity != "FATAL" || e.Code != "40P01" || !strings.Contains(e.Detail, "another connection of the key") ||
			!strings.Contains(e.Detail, "idle for 1s") {
			t.Fatalf("%s: %s %s %q %q; want FATAL 40P01 naming the cause", what, e.Severity, e.Code, e.Message, e.Detail)
		}
	}
	name := func(c *pgx.Conn) string {
		t.Helper()
		var n string
		if err := c.QueryRow(bounded(), "SELECT name FROM items WHERE id = $1", 1).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}

	// A's block holds a row lock B's statement needs; A waits for B before it commits.
	b := connect(t, url)
	for _, proto := range []struct {
		what string
		exec func() error
	}{
		{"simple protocol", func() error { _, err := b.Exec(bounded(), "UPDATE items SET name = 'b' WHERE id = 1"); return err }},
		{"extended protocol", func() error { _, err := b.Exec(bounded(), "UPDATE items SET name = $1 WHERE id = 1", "b"); return err }},
	} {
		a := openRaw(t, url)
		a.exchange(t, q("BEGIN"))
		a.exchange(t, q("UPDATE items SET name = 'a' WHERE id = 1"))
		if err := proto.exec(); err != nil {
			t.Fatalf("%s: the waiter failed: %v", proto.what, err)
		}
		wantVictim(proto.what, a)
		if got := name(b); got != "b" {
			t.Fatalf("%s: name %q after the deadlock; want b (a's block rolled back)", proto.what, got)
		}
	}

	// B's block waits for A's work, which waits for its turn.
	a := connect(t, url)
	blk := openRaw(t, url)
	blk.exchange(t, q("BEGIN"))
	blk.exchange(t, q("INSERT INTO items VALUES (5, 'five')"))
	mustExec(t, a, "INSERT INTO items VALUES (4, 'four')")
	wantVictim("waiting for a block", blk)

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
