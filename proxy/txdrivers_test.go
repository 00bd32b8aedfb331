package proxy

import (
	"context"
	"database/sql"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgconn/ctxwatch"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgtestproxy/pgtestproxy/internal/leasemode"
	"github.com/pgtestproxy/pgtestproxy/internal/testpg"
)

// pgx sees tx mode as a plain autocommit session: Begin, Commit and Rollback with the
// tags and status bytes it checks, pseudo-nested transactions (savepoints), batches
// that fail as a whole outside a transaction, and a commit of a failed transaction
// reported as pgx.ErrTxCommitRollback.
func TestTxPgx(t *testing.T) {
	t.Parallel()
	p := newTestProvider(t)
	s := startProxy(t, Config{Provider: p})
	ctx := testContext(t)
	c := connect(t, modeURL(s, leasemode.Tx, "app"))
	count := func() int {
		t.Helper()
		var n int
		if err := c.QueryRow(ctx, "SELECT count(*) FROM items").Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	err := pgx.BeginFunc(ctx, c, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "INSERT INTO items VALUES (4, 'four')"); err != nil {
			return err
		}
		// A pseudo-nested transaction that fails is rolled back to its savepoint.
		_ = pgx.BeginFunc(ctx, tx, func(inner pgx.Tx) error {
			_, err := inner.Exec(ctx, "INSERT INTO items VALUES (5, 'five')")
			if err != nil {
				return err
			}
			return errors.New("undo the inner one")
		})
		return nil
	})
	if err != nil || count() != 4 {
		t.Fatalf("commit: %v, %d rows", err, count())
	}
	tx, err := c.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = tx.Exec(ctx, "INSERT INTO items VALUES (1, 'dup')")
	if err := tx.Commit(ctx); !errors.Is(err, pgx.ErrTxCommitRollback) {
		t.Fatalf("commit of a failed transaction: %v, want ErrTxCommitRollback", err)
	}
	if st := c.PgConn().TxStatus(); st != 'I' {
		t.Fatalf("status %q after the failed commit", st)
	}

	b := &pgx.Batch{}
	b.Queue("INSERT INTO items VALUES (6, 'six')")
	b.Queue("INSERT INTO items VALUES (1, 'dup')")
	b.Queue("INSERT INTO items VALUES (7, 'seven')")
	if err := c.SendBatch(ctx, b).Close(); err == nil {
		t.Fatal("a batch with a duplicate key succeeded")
	}
	if n := count(); n != 4 {
		t.Fatalf("a failed batch left %d rows, want 4: it must fail as a whole", n)
	}
	tx, err = c.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.Serializable, AccessMode: pgx.ReadWrite})
	if err != nil {
		t.Fatal(err)
	}
	b = &pgx.Batch{} // pgx closes the statements of a failed batch: new ones
	b.Queue("INSERT INTO items VALUES (8, 'eight')")
	b.Queue("INSERT INTO items VALUES (2, 'dup')")
	br := tx.SendBatch(ctx, b)
	_, err1 := br.Exec()
	_, err2 := br.Exec()
	_ = br.Close()
	if err1 != nil || err2 == nil {
		t.Fatalf("batch in a transaction: %v, %v", err1, err2)
	}
	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	if n := count(); n != 4 {
		t.Fatalf("%d rows after the rolled back batch", n)
	}
}

// pgxpool keeps a tx-mode connection across acquire and release (pgxpool discards
// connections whose status is not idle), and context cancellation leaves the
// connection fit for the pool.
func TestTxPgxpool(t *testing.T) {
	t.Parallel()
	p := newTestProvider(t)
	s := startProxy(t, Config{Provider: p})
	ctx := testContext(t)
	cfg, err := pgxpool.ParseConfig(modeURL(s, leasemode.Tx, "app"))
	if err != nil {
		t.Fatal(err)
	}
	cfg.MaxConns = 1
	// Cancel with CancelRequest (libpq's way) rather than pgx's default of cutting the
	// connection, so the pool keeps it.
	cfg.ConnConfig.BuildContextWatcherHandler = func(pc *pgconn.PgConn) ctxwatch.Handler {
		return &pgconn.CancelRequestContextWatcherHandler{Conn: pc, DeadlineDelay: 30 * time.Second}
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	for i := range 5 {
		err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
			_, err := tx.Exec(ctx, "INSERT INTO items VALUES ($1, 'pooled')", 10+i)
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		_, _ = pool.Exec(ctx, "INSERT INTO items VALUES (1, 'dup')")
		short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
		_, err = pool.Exec(short, "SELECT pg_sleep(10)")
		cancel()
		if err == nil {
			t.Fatal("pg_sleep was not cancelled")
		}
	}
	var n int
	if err := pool.QueryRow(ctx, "SELECT count(*) FROM items").Scan(&n); err != nil || n != 8 {
		t.Fatalf("count %d, %v; want 8", n, err)
	}
	if st := pool.Stat(); st.TotalConns() != 1 || st.NewConnsCount() > 2 {
		t.Fatalf("pool made %d connections (%d open): tx mode should keep one", st.NewConnsCount(), st.TotalConns())
	}
	if got := len(p.releases()); got > 1 {
		t.Fatalf("%d leases released while the pool ran", got)
	}
}

// database/sql with both common drivers: BeginTx with isolation levels (accepted with a
// NOTICE) and read-only (writes refused with 25006, as on a plain server), commit,
// rollback, and errors outside transactions.
func TestTxDatabaseSQL(t *testing.T) {
	t.Parallel()
	p := newTestProvider(t)
	s := startProxy(t, Config{Provider: p})
	for _, driver := range []string{"pgx", "postgres"} {
		t.Run(driver, func(t *testing.T) {
			t.Parallel()
			ctx := testContext(t)
			url := modeURL(s, leasemode.Tx, "app")
			if driver == "postgres" {
				url = proxyURL(s, "app", "options=-c%20pgtestproxy.mode%3Dtx")
			}
			db, err := sql.Open(driver, url)
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			db.SetMaxOpenConns(1)
			testSQLTransactions(t, ctx, db)
		})
	}
}

func testSQLTransactions(t *testing.T, ctx context.Context, db *sql.DB) {
	for i, opts := range []*sql.TxOptions{nil, {Isolation: sql.LevelSerializable},
		{Isolation: sql.LevelRepeatableRead, ReadOnly: true}, {Isolation: sql.LevelReadCommitted}} {
		tx, err := db.BeginTx(ctx, opts)
		if err != nil {
			t.Fatalf("BeginTx %+v: %v", opts, err)
		}
		_, err = tx.ExecContext(ctx, "INSERT INTO items VALUES ($1, 'tx')", 10+i)
		switch {
		case opts != nil && opts.ReadOnly:
			if err == nil || !strings.Contains(err.Error(), "25006") {
				t.Fatalf("insert in a read-only transaction: %v, want SQLSTATE 25006", err)
			}
			if err := tx.Rollback(); err != nil {
				t.Fatal(err)
			}
			continue
		case err != nil:
			t.Fatal(err)
		}
		if i%2 == 0 {
			err = tx.Commit()
		} else {
			err = tx.Rollback()
		}
		if err != nil {
			t.Fatalf("end transaction %d: %v", i, err)
		}
		if _, err := db.ExecContext(ctx, "INSERT INTO items VALUES (1, 'dup')"); err == nil {
			t.Fatal("duplicate insert succeeded")
		}
	}
	var n int
	if err := db.QueryRowContext(ctx, "SELECT count(*) FROM items").Scan(&n); err != nil || n != 4 {
		t.Fatalf("count %d, %v; want 4", n, err)
	}
}

// psqlScript exercises what psql does on its own: transaction control in files and
// multi-statement lines, ON_ERROR_ROLLBACK (savepoints psql sends itself), \gset.
const psqlScript = `\set ON_ERROR_ROLLBACK on
\set VERBOSITY terse
INSERT INTO items VALUES (4, 'four');
BEGIN;
INSERT INTO items VALUES (5, 'five');
INSERT INTO items VALUES (1, 'dup');
INSERT INTO items VALUES (6, 'six');
COMMIT;
SELECT count(*) AS n FROM items \gset
\echo rows :n
BEGIN \; SELECT 1/0 \; COMMIT;
SELECT 'after' AS x; COMMIT; ROLLBACK;
START TRANSACTION ISOLATION LEVEL REPEATABLE READ;
SAVEPOINT a; DELETE FROM items; ROLLBACK TO a;
END;
SELECT id FROM items ORDER BY id;
`

// psql gives the same output through the proxy in tx mode as on a plain database.
func TestTxPsqlMatchesPlainServer(t *testing.T) {
	t.Parallel()
	psql := testpg.Psql(t)
	env := newDiffEnv(t)
	file := filepath.Join(t.TempDir(), "script.sql")
	if err := os.WriteFile(file, []byte(psqlScript), 0o600); err != nil {
		t.Fatal(err)
	}
	run := func(url string, env ...string) string {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, psql, "-X", "-f", file, url)
		cmd.Env = append(cmd.Environ(), env...)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("psql: %v\n%s", err, out)
		}
		return strings.ReplaceAll(string(out), file, "script.sql")
	}
	want := run(env.plainDB(t))
	got := run(proxyURL(env.s, "app"), "PGOPTIONS=-c pgtestproxy.mode=tx")
	// The one difference tx mode documents: transaction modes are not applied.
	notice := "psql:script.sql:13: NOTICE:  tx mode does not apply transaction modes: ISOLATION LEVEL REPEATABLE READ\n"
	if !strings.Contains(got, notice) {
		t.Errorf("no NOTICE about the transaction modes in\n%s", got)
	}
	got = strings.Replace(got, notice, "", 1)
	if got != want {
		t.Fatalf("psql output differs\nplain server:\n%s\nthrough the proxy:\n%s", want, got)
	}
}
