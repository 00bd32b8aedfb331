package main

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strconv"
	"sync/atomic"

	txdb "github.com/DATA-DOG/go-txdb"
	"github.com/jackc/pgerrcode"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	_ "github.com/jackc/pgx/v5/stdlib" // the "pgx" database/sql driver
	"github.com/peterldowns/pgtestdb"
	"github.com/peterldowns/pgtestdb/migrators/common"
)

// opener is one way a test gets its database: it returns the database and the func
// that gives it back (close, drop, roll back — whatever the approach does at test end).
// Every approach hands the test a database/sql *sql.DB over pgx's driver, so the test
// body and the driver are the same everywhere and only the approach differs.
type opener func(ctx context.Context) (*sql.DB, func() error, error)

// urlOpener connects to url: direct to a database, or through the proxy.
func urlOpener(url string) opener {
	return func(ctx context.Context) (*sql.DB, func() error, error) {
		db, err := sql.Open("pgx", url)
		if err != nil {
			return nil, nil, err
		}
		db.SetMaxOpenConns(1)
		return db, db.Close, nil
	}
}

var uniq atomic.Int64

// cloneOpener is the synchronous clone per test (what the seed's NewDB does): CREATE
// DATABASE … TEMPLATE, connect, and DROP at the end.
func cloneOpener(e *env, admin *sql.DB, template string) opener {
	return func(ctx context.Context) (*sql.DB, func() error, error) {
		name := "bench_clone_" + strconv.FormatInt(uniq.Add(1), 10)
		id := pgx.Identifier{name}.Sanitize()
		if _, err := admin.ExecContext(ctx, "CREATE DATABASE "+id+" TEMPLATE "+pgx.Identifier{template}.Sanitize()); err != nil {
			return nil, nil, fmt.Errorf("clone %s from %s: %w", name, template, err)
		}
		db, done, err := urlOpener(e.url("", name))(ctx)
		if err != nil {
			return nil, nil, err
		}
		return db, func() error {
			err := done()
			_, dropErr := admin.ExecContext(context.WithoutCancel(ctx), "DROP DATABASE "+id)
			return errors.Join(err, dropErr)
		}, nil
	}
}

// pgtestdbOpener is pgtestdb.New, the library itself, with a golang-migrate migrator.
func pgtestdbOpener(e *env, dir string) opener {
	conf := pgtestdb.Config{DriverName: "pgx", Host: "127.0.0.1", Port: strconv.Itoa(e.server.Port()),
		User: "postgres", Database: "postgres", Options: "sslmode=disable"}
	m := golangMigrator{dir: dir}
	return func(ctx context.Context) (db *sql.DB, done func() error, err error) {
		t := &tb{}
		defer t.recover(&err)
		db = pgtestdb.New(t, conf, m)
		return db, t.finish, nil
	}
}

// golangMigrator is pgtestdb's Migrator for a golang-migrate directory: the hash of
// the directory's files (pgtestdb's own helper) and golang-migrate's Up. pgtestdb's
// golangmigrator adapter is a module of its own that the module proxy does not serve;
// this is the same two calls.
type golangMigrator struct{ dir string }

func (m golangMigrator) Hash() (string, error) { return common.HashDir(m.dir) }

func (m golangMigrator) Migrate(ctx context.Context, _ *sql.DB, conf pgtestdb.Config) error {
	return runMigrate(ctx, conf.URL(), m.dir)
}

// tb is the pgtestdb.TB of one simulated test: it keeps the cleanups to run at the
// test's end and turns Fatalf into an error.
type tb struct {
	cleanups []func()
	err      error
}

type fatal struct{}

func (t *tb) Cleanup(f func())    { t.cleanups = append(t.cleanups, f) }
func (t *tb) Failed() bool        { return t.err != nil }
func (t *tb) Helper()             {}
func (t *tb) Logf(string, ...any) {}
func (t *tb) Fatalf(f string, a ...any) {
	t.err = fmt.Errorf(f, a...)
	panic(fatal{})
}

// recover turns a Fatalf into *err; other panics go on.
func (t *tb) recover(err *error) {
	if r := recover(); r != nil {
		if _, ok := r.(fatal); !ok {
			panic(r)
		}
		*err = t.err
	}
}

// finish runs the cleanups, last first, as testing does.
func (t *tb) finish() (err error) {
	defer t.recover(&err)
	for i := len(t.cleanups) - 1; i >= 0; i-- {
		t.cleanups[i]()
	}
	return t.err
}

// txdbFreshOpener is go-txdb with a new sql.DB (and so a new server connection) per test.
func txdbFreshOpener(dsn string) opener {
	return func(ctx context.Context) (*sql.DB, func() error, error) {
		db := sql.OpenDB(txdb.New("pgx", dsn))
		return db, db.Close, nil
	}
}

// txdbWarm is go-txdb registered once, with a connection kept open for the whole
// suite so its server connections stay warm; each test opens its own sql.DB on it
// (its own transaction) and closes it, which rolls the transaction back.
type txdbWarm struct {
	name string
	keep *sql.DB
}

var txdbDrivers atomic.Int64

func newTxdbWarm(ctx context.Context, dsn string) (*txdbWarm, error) {
	w := &txdbWarm{name: "txdb" + strconv.FormatInt(txdbDrivers.Add(1), 10)}
	txdb.Register(w.name, "pgx", dsn)
	w.keep, _ = sql.Open(w.name, "keepalive")
	if err := w.keep.PingContext(ctx); err != nil {
		return nil, err
	}
	if d, ok := w.keep.Driver().(*txdb.TxDriver); ok {
		d.DB().SetMaxIdleConns(8)
	}
	return w, nil
}

func (w *txdbWarm) close() { _ = w.keep.Close() }

func (w *txdbWarm) opener() opener {
	return func(ctx context.Context) (*sql.DB, func() error, error) {
		db, err := sql.Open(w.name, "test"+strconv.FormatInt(uniq.Add(1), 10))
		if err != nil {
			return nil, nil, err
		}
		return db, db.Close, nil
	}
}

// selectOne is the first query of an acquisition.
func selectOne(ctx context.Context, db *sql.DB) error {
	var one int
	return db.QueryRowContext(ctx, "SELECT 1").Scan(&one)
}

// testBody is one simulated test: three inserts, two selects, one expected unique
// violation (last, as it aborts a transaction-wrapped test's transaction).
func testBody(ctx context.Context, db *sql.DB) error {
	id := strconv.FormatInt(uniq.Add(1), 10)
	for i := range 3 {
		email := fmt.Sprintf("u%s-%d@example.com", id, i)
		if _, err := db.ExecContext(ctx, "INSERT INTO bench_users (email, name) VALUES ($1, $2)", email, "user "+id); err != nil {
			return fmt.Errorf("insert: %w", err)
		}
	}
	var n int
	if err := db.QueryRowContext(ctx, "SELECT count(*) FROM bench_users").Scan(&n); err != nil {
		return fmt.Errorf("count: %w", err)
	}
	if n != 3 {
		return fmt.Errorf("count = %d, want 3: the test does not have a database of its own", n)
	}
	var name string
	if err := db.QueryRowContext(ctx, "SELECT name FROM bench_users WHERE email = $1", "u"+id+"-1@example.com").Scan(&name); err != nil {
		return fmt.Errorf("select: %w", err)
	}
	_, err := db.ExecContext(ctx, "INSERT INTO bench_users (email, name) VALUES ($1, $2)", "u"+id+"-0@example.com", "dup")
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != pgerrcode.UniqueViolation {
		return fmt.Errorf("duplicate insert: got %v, want unique_violation", err)
	}
	return nil
}

// oneTest runs body on a database from open and gives it back.
func oneTest(ctx context.Context, open opener, body func(context.Context, *sql.DB) error) error {
	db, done, err := open(ctx)
	if err != nil {
		return err
	}
	err = body(ctx, db)
	return errors.Join(err, done())
}
