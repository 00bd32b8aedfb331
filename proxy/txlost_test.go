package proxy

import (
	"context"
	"errors"
	"io"
	"slices"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgtestproxy/pgtestproxy/internal/leasemode"
)

// wantTerminated fails t unless err is what a connection whose backend was
// terminated gets: the server's FATAL 57P01, or (when the FATAL came while the
// client was not reading) a closed connection.
func wantTerminated(t *testing.T, what string, err error) {
	t.Helper()
	var pgErr *pgconn.PgError
	switch {
	case err == nil:
		t.Fatalf("%s: no error after its backend was terminated", what)
	case errors.As(err, &pgErr) && pgErr.Code != "57P01":
		t.Fatalf("%s: SQLSTATE %s (%s), want 57P01", what, pgErr.Code, pgErr.Message)
	}
}

// hasTable reports whether the lease c is on has table name (a mark of the lease).
func hasTable(t *testing.T, c interface {
	QueryRow(context.Context, string, ...any) pgx.Row
}, name string) bool {
	t.Helper()
	var ok bool
	if err := c.QueryRow(testContext(t), "SELECT to_regclass($1) IS NOT NULL", name).Scan(&ok); err != nil {
		t.Fatalf("look up %s: %v", name, err)
	}
	return ok
}

// Issue 15 item 1: pg_terminate_backend(pg_backend_pid()) on a shared tx-mode key (a
// pgx pool and plain connections with one key) ends the connections on that backend
// with the server's FATAL, retires the lease (its clone released unclean, never
// handed out again), and the key's next connection gets a fresh lease at once: no
// linger wait, no 08006 refusal, also while connections keep arriving.
func TestTxLostLease(t *testing.T) {
	t.Parallel()
	p := newTestProvider(t)
	s := startProxy(t, Config{Provider: p, Linger: time.Hour})
	ctx := testContext(t)
	url := modeURL(s, leasemode.Tx, "app", "session=lost")
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		t.Fatal(err)
	}
	const poolConns = 3
	cfg.MaxConns, cfg.MinConns = poolConns, poolConns
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	var held []*pgxpool.Conn
	for range poolConns {
		c, err := pool.Acquire(ctx)
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, c)
	}
	killer, bystander := connect(t, url), connect(t, url)
	if _, err := killer.Exec(ctx, "CREATE TABLE lost_mark ()"); err != nil {
		t.Fatal(err)
	}
	lost := p.liveNames()
	if len(lost) != 1 {
		t.Fatalf("leases %v, want one", lost)
	}

	_, err = killer.Exec(ctx, "SELECT pg_terminate_backend(pg_backend_pid())")
	wantSQLState(t, err, "57P01")
	wantTerminated(t, "another connection of the key", bystander.Ping(ctx))
	for i, c := range held {
		wantTerminated(t, "a pooled connection", c.Ping(ctx))
		if !c.Conn().IsClosed() {
			t.Fatalf("pooled connection %d still open", i)
		}
		c.Release()
	}
	waitFor(t, "the lost lease's release", func() bool {
		return slices.Contains(p.releases(), releaseRecord{database: lost[0], clean: false})
	})

	// The key's next connections, at once and one after another, get a fresh lease.
	for i := range 3 {
		c, err := pgx.Connect(ctx, url)
		if err != nil {
			t.Fatalf("connection %d after the lost lease: %v", i, err)
		}
		if hasTable(t, c, "lost_mark") {
			t.Fatalf("connection %d after the lost lease sees the lost lease's table", i)
		}
		if i == 0 {
			if _, err := c.Exec(ctx, "CREATE TABLE fresh_mark ()"); err != nil {
				t.Fatal(err)
			}
		} else if !hasTable(t, c, "fresh_mark") {
			t.Fatalf("connection %d does not share the key's fresh lease", i)
		}
		_ = c.Close(ctx)
	}
	if !hasTable(t, pool, "fresh_mark") {
		t.Fatal("the pool's new connection is not on the key's fresh lease")
	}
	for _, r := range p.releases() {
		if r.database == lost[0] && r.clean {
			t.Fatalf("the lost lease's clone %s was released clean", r.database)
		}
	}
}

// Issue 15 item 2: BackendKeyData carries the real backend's PID, in both modes, with
// and without a session key: it is pg_backend_pid(), pg_stat_activity finds it,
// pg_terminate_backend of it from another connection ends the client's session as on
// a plain server, and a CancelRequest with the real PID but a wrong secret does
// nothing.
func TestRealBackendPID(t *testing.T) {
	t.Parallel()
	forEachMode(t, func(t *testing.T, mode leasemode.Mode) {
		for _, key := range []string{"", "session=pid"} {
			t.Run("key="+key, func(t *testing.T) {
				t.Parallel()
				testRealBackendPID(t, mode, key)
			})
		}
	})
}

func testRealBackendPID(t *testing.T, mode leasemode.Mode, key string) {
	p := newTestProvider(t)
	s := startProxy(t, Config{Provider: p})
	ctx := testContext(t)
	var query []string
	if key != "" {
		query = append(query, key)
	}
	url := modeURL(s, mode, "app", query...)
	victim := connect(t, url)
	other := connect(t, modeURL(s, leasemode.DB, "app"))
	pid := victim.PgConn().PID()
	var real uint32
	if err := victim.QueryRow(ctx, "SELECT pg_backend_pid()").Scan(&real); err != nil {
		t.Fatal(err)
	}
	if real != pid {
		t.Fatalf("BackendKeyData PID %d, pg_backend_pid() %d", pid, real)
	}
	var db string
	if err := other.QueryRow(ctx, "SELECT datname FROM pg_stat_activity WHERE pid = $1", pid).Scan(&db); err != nil || db != currentDatabase(t, victim) {
		t.Fatalf("pg_stat_activity by the client's PID: %q, %v", db, err)
	}

	// A wrong secret with the real PID cancels nothing.
	done := make(chan error, 1)
	go func() {
		_, err := victim.Exec(context.Background(), "SELECT pg_sleep(1)")
		done <- err
	}()
	waitFor(t, "the victim's sleep", func() bool {
		var n int
		_ = other.QueryRow(ctx, "SELECT count(*) FROM pg_stat_activity WHERE pid = $1 AND query LIKE '%pg_sleep(1)%' AND state = 'active'", pid).Scan(&n)
		return n > 0
	})
	raw := rawConn(t, s)
	secret := slices.Clone(victim.PgConn().SecretKey())
	secret[0] ^= 0xff
	if _, err := raw.Write(encode(t, &pgproto3.CancelRequest{ProcessID: pid, SecretKey: secret})); err != nil {
		t.Fatal(err)
	}
	if b, err := io.ReadAll(raw); err != nil || len(b) > 0 {
		t.Fatalf("cancel with a wrong secret answered %q, %v", b, err)
	}
	if err := <-done; err != nil {
		t.Fatalf("a cancel with a wrong secret ended the statement: %v", err)
	}

	var ok bool
	if err := other.QueryRow(ctx, "SELECT pg_terminate_backend($1)", pid).Scan(&ok); err != nil || !ok {
		t.Fatalf("pg_terminate_backend(%d): %v, %v", pid, ok, err)
	}
	waitFor(t, "the terminated backend's end", func() bool {
		var n int
		_ = other.QueryRow(ctx, "SELECT count(*) FROM pg_stat_activity WHERE pid = $1", pid).Scan(&n)
		return n == 0
	})
	_, err := victim.Exec(ctx, "SELECT 1")
	wantTerminated(t, "the terminated client", err)
	if key != "" {
		next := connect(t, url)
		if err := next.Ping(ctx); err != nil {
			t.Fatalf("the key's next connection after its backend was terminated: %v", err)
		}
	}
}
