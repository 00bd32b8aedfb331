package proxy

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgconn/ctxwatch"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgtestproxy/pgtestproxy/internal/leasemode"
)

// Connections that share a tx-mode session key share one transaction (README, FAQ): a pool
// of them sees its own writes across connections, pgx's prepared statements (the same
// names on every connection) do not collide, and they run concurrently.
func TestTxSharedPool(t *testing.T) {
	t.Parallel()
	p := newTestProvider(t)
	s := startProxy(t, Config{Provider: p})
	ctx := testContext(t)
	cfg, err := pgxpool.ParseConfig(modeURL(s, leasemode.Tx, "app", "session=pool"))
	if err != nil {
		t.Fatal(err)
	}
	const conns = 8 // issue 6: a pgxpool of 8
	cfg.MaxConns, cfg.MinConns = conns, conns
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	var wg sync.WaitGroup
	for w := range conns {
		wg.Go(func() {
			for i := range 25 {
				id := 100 + w*100 + i
				err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
					_, err := tx.Exec(ctx, "INSERT INTO items VALUES ($1, 'pooled')", id)
					return err
				})
				if err == nil {
					var n int
					err = pool.QueryRow(ctx, "SELECT count(*) FROM items WHERE id = $1", id).Scan(&n)
					if err == nil && n != 1 {
						err = fmt.Errorf("row %d not seen after its commit", id)
					}
				}
				if err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	var n int
	if err := pool.QueryRow(ctx, "SELECT count(*) FROM items").Scan(&n); err != nil || n != 3+conns*25 {
		t.Fatalf("count %d, %v; want %d", n, err, 3+conns*25)
	}
	if st := pool.Stat(); st.TotalConns() != conns {
		t.Fatalf("pool has %d connections", st.TotalConns())
	}
	if got := p.acquired(); got != 1 {
		t.Fatalf("%d leases for one session key", got)
	}
}

// A client transaction block holds the backend until it ends: the other connection's
// statement waits, then sees the block's commit; a block whose client leaves is rolled
// back and lets the others go on; each connection's prepared statements are its own,
// and errors name them as the client did.
func TestTxSharedTurns(t *testing.T) {
	t.Parallel()
	p := newTestProvider(t)
	s := startProxy(t, Config{Provider: p})
	ctx := testContext(t)
	url := modeURL(s, leasemode.Tx, "app", "session=turns")
	a, b := connect(t, url), connect(t, url)
	if _, err := a.Exec(ctx, "BEGIN; INSERT INTO items VALUES (4, 'four')"); err != nil {
		t.Fatal(err)
	}
	done := make(chan int, 1)
	sent := s.Stats().BytesIn
	go func() {
		var n int
		_ = b.QueryRow(ctx, "SELECT count(*) FROM items").Scan(&n)
		done <- n
	}()
	// Once b's statement reached the proxy, a's block goes on: b, waiting for its
	// turn, sees the row a inserts now, after its statement arrived.
	waitBytesIn(t, s, sent)
	if _, err := a.Exec(ctx, "INSERT INTO items VALUES (6, 'six')"); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Exec(ctx, "COMMIT"); err != nil {
		t.Fatal(err)
	}
	if n := <-done; n != 5 {
		t.Fatalf("the other connection saw %d rows, want the 5 after the block's commit: it ran during the block", n)
	}

	// Same statement names on both connections, different statements.
	pa, pb := a.PgConn(), b.PgConn()
	if _, err := pa.Prepare(ctx, "s1", "SELECT 'a'", nil); err != nil {
		t.Fatal(err)
	}
	if _, err := pb.Prepare(ctx, "s1", "SELECT 'b'", nil); err != nil {
		t.Fatal(err)
	}
	for conn, want := range map[*pgconn.PgConn]string{pa: "a", pb: "b"} {
		res := conn.ExecPrepared(ctx, "s1", nil, nil, nil).Read()
		if res.Err != nil || string(res.Rows[0][0]) != want {
			t.Fatalf("s1 on its connection: %v %q, want %q", res.Err, res.Rows, want)
		}
	}
	_, err := pa.Prepare(ctx, "s1", "SELECT 2", nil)
	if e := wantSQLState(t, err, "42P05"); e.Message != `prepared statement "s1" already exists` {
		t.Fatalf("error names the server's statement: %q", e.Message)
	}

	// A client that leaves in its block: rolled back, the other goes on.
	if _, err := b.Exec(ctx, "BEGIN; INSERT INTO items VALUES (5, 'five')"); err != nil {
		t.Fatal(err)
	}
	counted := make(chan error, 1)
	var n int
	sent = s.Stats().BytesIn
	go func() { counted <- a.QueryRow(ctx, "SELECT count(*) FROM items").Scan(&n) }()
	waitBytesIn(t, s, sent) // a's statement waits for b's block
	_ = b.Close(context.Background())
	if err := <-counted; err != nil || n != 5 {
		t.Fatalf("after the other left in its block: %d, %v; want 5", n, err)
	}
}

// A connection's CancelRequest cancels its own statement, never another connection's
// of the same session key.
func TestTxSharedCancel(t *testing.T) {
	t.Parallel()
	p := newTestProvider(t)
	s := startProxy(t, Config{Provider: p})
	ctx := testContext(t)
	url := modeURL(s, leasemode.Tx, "app", "session=cancel")
	open := func() *pgconn.PgConn {
		c, err := pgconn.Connect(ctx, url)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.Close(context.Background()) })
		return c
	}
	sleeper, other := open(), open()
	done := make(chan error, 1)
	go func() {
		_, err := sleeper.Exec(context.Background(), "SELECT pg_sleep(1)").ReadAll()
		done <- err
	}()
	waitSleeping(t, p.liveNames()[0])
	if err := other.CancelRequest(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatalf("another connection's cancel ended the sleep: %v", err)
	}
	victim := sleepInBackground(sleeper)
	waitSleeping(t, p.liveNames()[0])
	if err := sleeper.CancelRequest(ctx); err != nil {
		t.Fatal(err)
	}
	wantCancelled(t, victim)
	if _, err := other.Exec(ctx, "SELECT 1").ReadAll(); err != nil {
		t.Fatal(err)
	}
}

// Several connections of one session key, each committing, rolling back, failing and
// cancelling in its own way at the same time, never see the proxy lose its transaction
// or one connection's outcome leak into another's: every connection's committed rows,
// and only those, are there at the end. 16 connections × 600 mixed steps each;
// PGTESTPROXY_STRESS_STEPS=10000 gives issue 6's full size (about 8 minutes here, so
// not in every `make test`).
func TestTxSharedStress(t *testing.T) {
	t.Parallel()
	p := newTestProvider(t)
	s := startProxy(t, Config{Provider: p, Logger: nopLogger()})
	workers, steps := 16, 600
	if n, err := strconv.Atoi(os.Getenv("PGTESTPROXY_STRESS_STEPS")); err == nil && n > 0 {
		steps = n
	}
	// The deadline only turns a hang into a failure; it is generous because the test
	// shares two cores with the rest of the suite (and, in development, more).
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute+time.Duration(steps*workers)*20*time.Millisecond)
	defer cancel()
	cfg, err := pgx.ParseConfig(modeURL(s, leasemode.Tx, "app", "session=stress"))
	if err != nil {
		t.Fatal(err)
	}
	cfg.BuildContextWatcherHandler = func(pc *pgconn.PgConn) ctxwatch.Handler {
		return &pgconn.CancelRequestContextWatcherHandler{Conn: pc, DeadlineDelay: 30 * time.Second}
	}
	want := make([]int, workers)
	var wg sync.WaitGroup
	for w := range workers {
		c, err := pgx.ConnectConfig(ctx, cfg)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.Close(context.Background()) })
		wg.Go(func() {
			for i := range steps {
				id := 1000 + w*100000 + i
				committed, err := stressStep(ctx, c, i, id)
				if err != nil {
					t.Errorf("worker %d step %d: %v", w, i, err)
					return
				}
				if committed {
					want[w]++
				}
			}
		})
	}
	wg.Wait()
	c := connect(t, modeURL(s, leasemode.Tx, "app", "session=stress"))
	for w := range workers {
		var n int
		if err := c.QueryRow(ctx, "SELECT count(*) FROM items WHERE id >= $1 AND id < $2",
			1000+w*100000, 1000+(w+1)*100000).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n != want[w] {
			t.Errorf("worker %d: %d rows, want %d", w, n, want[w])
		}
	}
}

// stressStep runs one of the stress test's steps and reports whether it committed row
// id. Errors the step provokes itself are not errors.
func stressStep(ctx context.Context, c *pgx.Conn, i, id int) (bool, error) {
	insert := "INSERT INTO items VALUES ($1, 'stress')"
	switch i % 6 {
	case 0: // autocommit
		_, err := c.Exec(ctx, insert, id)
		return err == nil, err
	case 1: // committed transaction
		err := pgx.BeginFunc(ctx, c, func(tx pgx.Tx) error { _, err := tx.Exec(ctx, insert, id); return err })
		return err == nil, err
	case 2: // rolled back transaction
		tx, err := c.Begin(ctx)
		if err == nil {
			_, err = tx.Exec(ctx, insert, id)
			_ = tx.Rollback(ctx)
		}
		return false, err
	case 3: // a failing statement after an insert in one string: nothing stays
		_, err := c.Exec(ctx, fmt.Sprintf("INSERT INTO items VALUES (%d, 'x'); SELECT 1/0", id))
		if err == nil {
			return false, errors.New("1/0 did not fail")
		}
		return false, nil
	case 4: // a cancelled statement after an insert in one string: nothing stays
		short, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
		defer cancel()
		_, err := c.Exec(short, fmt.Sprintf("INSERT INTO items VALUES (%d, 'x'); SELECT pg_sleep(5)", id))
		// A cancel that reaches the proxy before it has sent the string to the backend
		// (the string waits for its turn, or is not read yet) is dropped, as a late one
		// is (a known limit, proxy/internal/txmode/doc.go): the string then runs whole and its row stays.
		// Either way the row's fate must match what the client was told.
		return err == nil, nil
	default: // a batch that fails as a whole
		b := &pgx.Batch{}
		b.Queue(insert, id)
		b.Queue("SELECT 1/0")
		_ = c.SendBatch(ctx, b).Close()
		return false, nil
	}
}
