package proxy

import (
	"context"
	"errors"
	"math/rand/v2"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgtestproxy/pgtestproxy/internal/leasemode"
)

// CancelRequests that arrive at any moment (while the client's statement runs,
// between statements, while the proxy's own savepoint statements run) cancel at most
// the client's statement: the session never breaks and no statement that completed
// is undone. Every statement bumps a counter once; at the end the counter must count
// the statements that reported success, plus at most those cancelled after their
// COMMIT (which a plain server keeps too).
func TestTxCancelStorm(t *testing.T) {
	t.Parallel()
	p := newTestProvider(t)
	s := startProxy(t, Config{Provider: p, Logger: nopLogger()})
	ctx := testContext(t)
	c, err := pgconn.Connect(ctx, modeURL(s, leasemode.Tx, "app"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(context.Background())
	if _, err := c.Exec(ctx, "CREATE TABLE counter (n int); INSERT INTO counter VALUES (0)").ReadAll(); err != nil {
		t.Fatal(err)
	}
	statements := []struct {
		sql          string
		commitsEarly bool // a cancel may come after the bump was committed
	}{
		{"UPDATE counter SET n = n + 1", false},
		{"UPDATE counter SET n = n + 1; SELECT pg_sleep(0.005)", false},
		{"BEGIN; UPDATE counter SET n = n + 1; SELECT pg_sleep(0.005); COMMIT", false},
		{"SELECT pg_sleep(0.01); UPDATE counter SET n = n + 1", false},
		{"BEGIN; UPDATE counter SET n = n + 1; COMMIT; SELECT pg_sleep(0.002)", true},
	}
	// Cancels arrive independently of the statements, so some land between them and
	// while the proxy's savepoint statements run.
	stop := make(chan struct{})
	var storm sync.WaitGroup
	storm.Go(func() {
		for {
			select {
			case <-stop:
				return
			case <-time.After(time.Duration(rand.IntN(10000)) * time.Microsecond):
				_ = c.CancelRequest(ctx)
			}
		}
	})
	defer storm.Wait()
	defer close(stop)
	deadline := time.Now().Add(3 * time.Second)
	succeeded, cancelled, maybe := 0, 0, 0
	for i := 0; time.Now().Before(deadline); i++ {
		st := statements[i%len(statements)]
		_, err := c.Exec(ctx, st.sql).ReadAll()
		var pgErr *pgconn.PgError
		switch {
		case err == nil:
			succeeded++
		case errors.As(err, &pgErr) && pgErr.Code == "57014":
			cancelled++
			if st.commitsEarly {
				maybe++
			}
			err = nil
			if c.TxStatus() == 'E' { // cancelled inside BEGIN … COMMIT, as on a plain server
				_, err = c.Exec(ctx, "ROLLBACK").ReadAll()
			}
		}
		if status := c.TxStatus(); status != 'I' || err != nil {
			t.Fatalf("statement %d (%s): %v, status %q", i, st.sql, err, status)
		}
	}
	res, err := c.Exec(ctx, "SELECT n FROM counter").ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	n, _ := strconv.Atoi(string(res[0].Rows[0][0]))
	if n < succeeded || n > succeeded+maybe {
		t.Fatalf("counter %d after %d successful and %d cancelled statements (%d of them maybe after COMMIT)",
			n, succeeded, cancelled, maybe)
	}
	t.Logf("%d statements succeeded, %d were cancelled", succeeded, cancelled)
	if cancelled == 0 {
		t.Error("no statement was cancelled: the storm missed")
	}
}

// A cancel while a client's transaction block runs fails the block, as on a plain
// server; the client rolls back and goes on.
func TestTxCancelInBlock(t *testing.T) {
	t.Parallel()
	p := newTestProvider(t)
	s := startProxy(t, Config{Provider: p})
	ctx := testContext(t)
	c, err := pgconn.Connect(ctx, modeURL(s, leasemode.Tx, "app"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(context.Background())
	if _, err := c.Exec(ctx, "BEGIN; INSERT INTO items VALUES (4, 'four')").ReadAll(); err != nil {
		t.Fatal(err)
	}
	done := sleepInBackground(c)
	waitSleeping(t, p.liveNames()[0])
	if err := c.CancelRequest(ctx); err != nil {
		t.Fatal(err)
	}
	wantCancelled(t, done)
	if c.TxStatus() != 'E' {
		t.Fatalf("status %q after a cancel in a block, want E", c.TxStatus())
	}
	if _, err := c.Exec(ctx, "ROLLBACK").ReadAll(); err != nil {
		t.Fatal(err)
	}
	res, err := c.Exec(ctx, "SELECT count(*) FROM items").ReadAll()
	if err != nil || string(res[0].Rows[0][0]) != "3" {
		t.Fatalf("after rollback: %v %v", res, err)
	}
	// A CancelRequest for an idle session does nothing.
	if err := c.CancelRequest(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Exec(ctx, "SELECT 1").ReadAll(); err != nil {
		t.Fatalf("after a cancel of an idle session: %v", err)
	}
}
