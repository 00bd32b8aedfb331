package pgtest_test

import (
	"context"
	"database/sql"
	"errors"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgtestproxy/pgtestproxy/pgtest"
)

// These tests use the package as its users do; testdata/migrations is the template: a
// users table holding alice.

func count(t *testing.T, db *sql.DB) int {
	t.Helper()
	var n int
	if err := db.QueryRowContext(t.Context(), "SELECT count(*) FROM users").Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func currentDatabase(t *testing.T, db *sql.DB) string {
	t.Helper()
	var name string
	if err := db.QueryRowContext(t.Context(), "SELECT current_database()").Scan(&name); err != nil {
		t.Fatal(err)
	}
	return name
}

func TestNewDBMigrated(t *testing.T) {
	db := pgtest.NewDB(t)
	var name string
	if err := db.QueryRowContext(t.Context(), "SELECT name FROM users").Scan(&name); err != nil || name != "alice" {
		t.Fatalf("users: %q, %v; want the template's alice", name, err)
	}
}

// TestIsolatedBetweenTests: parallel tests write the same unique value without
// meeting, each in a database of its own, in both modes.
func TestIsolatedBetweenTests(t *testing.T) {
	for _, mode := range []struct {
		name string
		open func(testing.TB) *sql.DB
	}{{"db", pgtest.NewDB}, {"tx", pgtest.NewTx}} {
		t.Run(mode.name, func(t *testing.T) {
			for _, name := range []string{"first", "second", "third"} {
				t.Run(name, func(t *testing.T) {
					t.Parallel()
					db := mode.open(t)
					if _, err := db.ExecContext(t.Context(), "INSERT INTO users (name) VALUES ('bob')"); err != nil {
						t.Fatal(err)
					}
					if n := count(t, db); n != 2 {
						t.Fatalf("%d users, want alice and this test's bob", n)
					}
				})
			}
		})
	}
}

// TestSharedWithinTest: every handle and connection of one test is on one lease.
func TestSharedWithinTest(t *testing.T) {
	a, b := pgtest.NewDB(t), pgtest.NewDB(t)
	if da, db := currentDatabase(t, a), currentDatabase(t, b); da != db {
		t.Fatalf("two handles of one test on %s and %s", da, db)
	}
	if _, err := a.ExecContext(t.Context(), "INSERT INTO users (name) VALUES ('bob')"); err != nil {
		t.Fatal(err)
	}
	if n := count(t, b); n != 2 {
		t.Fatalf("the other handle sees %d users, want 2", n)
	}
	// A pool's connections, several at once.
	ctx := t.Context()
	var conns []*sql.Conn
	for range 3 {
		c, err := a.Conn(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		conns = append(conns, c)
	}
	for i, c := range conns {
		var n int
		if err := c.QueryRowContext(ctx, "SELECT count(*) FROM users").Scan(&n); err != nil || n != 2 {
			t.Fatalf("connection %d sees %d users (%v), want 2", i, n, err)
		}
	}
}

func TestNewTxTransactionsAndErrors(t *testing.T) {
	db := pgtest.NewTx(t)
	ctx := t.Context()
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.ExecContext(ctx, "INSERT INTO users (name) VALUES ('bob')"); err != nil {
		t.Fatal(err)
	}
	if err := tx.Rollback(); err != nil {
		t.Fatal(err)
	}
	if n := count(t, db); n != 1 {
		t.Fatalf("%d users after a rolled-back insert, want 1", n)
	}
	_, err = db.ExecContext(ctx, "INSERT INTO users (name) VALUES ('alice')")
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != "23505" {
		t.Fatalf("duplicate insert: %v, want a *pgconn.PgError with SQLSTATE 23505", err)
	}
	tx, err = db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.ExecContext(ctx, "INSERT INTO users (name) VALUES ('bob')"); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	if n := count(t, db); n != 2 {
		t.Fatalf("%d users after a committed insert, want 2", n)
	}
}

func TestNewPool(t *testing.T) {
	for _, mode := range []struct {
		name string
		open func(testing.TB) *pgxpool.Pool
	}{{"db", pgtest.NewPool}, {"tx", pgtest.NewTxPool}} {
		t.Run(mode.name, func(t *testing.T) {
			pool := mode.open(t)
			ctx := t.Context()
			b := &pgx.Batch{}
			b.Queue("INSERT INTO users (name) VALUES ('bob')")
			b.Queue("INSERT INTO users (name) VALUES ('carol')")
			if err := pool.SendBatch(ctx, b).Close(); err != nil {
				t.Fatal(err)
			}
			var wg sync.WaitGroup
			errs := make(chan error, 4)
			for range 4 {
				wg.Go(func() {
					var n int
					err := pool.QueryRow(ctx, "SELECT count(*) FROM users, pg_sleep(0.05)").Scan(&n)
					if err == nil && n != 3 {
						err = errors.New("a pool connection does not see the batch's rows")
					}
					errs <- err
				})
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				if err != nil {
					t.Fatal(err)
				}
			}
		})
	}
}

// TestConnString hands the lease to a driver of one's own.
func TestConnString(t *testing.T) {
	db := pgtest.NewDB(t)
	conn, err := pgx.Connect(t.Context(), pgtest.ConnString(t, "db"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	var name string
	if err := conn.QueryRow(t.Context(), "SELECT current_database()").Scan(&name); err != nil {
		t.Fatal(err)
	}
	if want := currentDatabase(t, db); name != want {
		t.Fatalf("ConnString's connection is on %s, NewDB's on %s", name, want)
	}
}
