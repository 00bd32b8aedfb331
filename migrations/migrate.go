package migrations

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"github.com/jackc/pgerrcode"
	"io"
	"net"
	"sync"
	"testing/fstest"
	"time"

	"github.com/golang-migrate/migrate/v4"
	"github.com/golang-migrate/migrate/v4/database"
	pgxmigrate "github.com/golang-migrate/migrate/v4/database/pgx/v5"
	"github.com/golang-migrate/migrate/v4/source/iofs"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/stdlib"

	"github.com/pgtestproxy/pgtestproxy/internal/progress"
)

// cancelGrace bounds the cancel request sent to the server when ctx ends mid-migration.
const cancelGrace = 2 * time.Second

// Migrate applies the migrations that produced hash (see Hash) to the database at
// connString with golang-migrate, and returns when they are applied, have failed, or ctx
// has ended. It is meant for a fresh database; one already at the latest version is left
// as it is (golang-migrate's ErrNoChange is success). A failing migration returns an
// *Error. When ctx ends first, the running statement is cancelled, the connections are
// closed and the returned error wraps ctx.Err().
func (d *Dir) Migrate(ctx context.Context, connString, hash string) error {
	snap, err := d.snapshot(hash)
	if err != nil {
		return err
	}
	return d.migrateSnapshot(ctx, connString, snap)
}

// migrateSnapshot applies snap's files (see Migrate).
func (d *Dir) migrateSnapshot(ctx context.Context, connString string, snap *snapshot) error {
	if len(snap.files) == 0 {
		return nil // golang-migrate refuses an empty source; an empty template needs nothing
	}
	if snap.format != GolangMigrate {
		return d.apply(ctx, connString, snap)
	}
	cfg, err := pgx.ParseConfig(connString)
	if err != nil {
		return fmt.Errorf("migrate %s: %w", d.display, err)
	}
	conns := &tracker{dial: cfg.DialFunc}
	cfg.DialFunc = conns.Dial
	db := stdlib.OpenDB(*cfg, stdlib.OptionAfterConnect(func(_ context.Context, c *pgx.Conn) error {
		conns.addPg(c.PgConn())
		return nil
	}))
	defer db.Close()

	rec := &recorder{report: func(s progress.Step) { progress.Report(ctx, s) }}
	done := make(chan error, 1)
	go func() { done <- d.up(db, snap, rec) }()
	select {
	case err = <-done:
	case <-ctx.Done():
		conns.abort()
		<-done
		return d.canceled(ctx, rec, snap)
	}
	if errors.Is(err, migrate.ErrNoChange) {
		return nil
	}
	var merr *Error
	if errors.As(err, &merr) {
		merr.Dir = d.display
		if merr.Line == 0 {
			merr.Line = replay(ctx, cfg, merr)
		}
		return merr
	}
	if err != nil {
		if v, ok := rec.failed(); ok {
			return &Error{Dir: d.display, File: fileName(snap, v), Message: err.Error(), Err: err}
		}
		return fmt.Errorf("migrate %s: %w", d.display, err)
	}
	return nil
}

// up runs golang-migrate's Up over snap on db.
func (d *Dir) up(db *sql.DB, snap *snapshot, rec *recorder) error {
	mfs := fstest.MapFS{}
	for _, f := range snap.files {
		mfs[f.name] = &fstest.MapFile{Data: f.data}
	}
	src, err := iofs.New(mfs, ".")
	if err != nil {
		return err
	}
	drv, err := pgxmigrate.WithInstance(db, &pgxmigrate.Config{})
	if err != nil {
		src.Close()
		return fmt.Errorf("prepare database: %w", err)
	}
	rec.Driver, rec.snap = drv, snap
	m, err := migrate.NewWithInstance("iofs", src, "pgx5", rec)
	if err != nil {
		src.Close()
		drv.Close()
		return err
	}
	err = m.Up()
	srcErr, dbErr := m.Close()
	if err == nil {
		err = errors.Join(srcErr, dbErr)
	}
	return err
}

// canceled builds the error for a migration cut short by ctx.
func (d *Dir) canceled(ctx context.Context, rec *recorder, snap *snapshot) error {
	if v, ok := rec.running(); ok {
		return &Error{Dir: d.display, File: fileName(snap, v), Code: pgerrcode.QueryCanceled,
			Message: "canceled: " + ctx.Err().Error(), Err: ctx.Err()}
	}
	return fmt.Errorf("migrate %s: %w", d.display, ctx.Err())
}

func fileName(snap *snapshot, version uint) string {
	if f, ok := snap.fileFor(version); ok {
		return f.name
	}
	return fmt.Sprintf("version %d", version)
}

// recorder wraps golang-migrate's database driver to know which migration is running
// and to turn a failing one into an *Error.
type recorder struct {
	database.Driver
	snap   *snapshot
	report progress.Func // told of each migration as its Run begins

	mu      sync.Mutex
	version int  // the migration being applied, -1 for none
	inRun   bool // Run of version has started
	bad     bool // Run of version failed
}

func (r *recorder) SetVersion(version int, dirty bool) error {
	if dirty {
		r.mu.Lock()
		r.version, r.inRun, r.bad = version, false, false
		r.mu.Unlock()
	}
	return r.Driver.SetVersion(version, dirty)
}

func (r *recorder) Run(body io.Reader) error {
	r.mu.Lock()
	r.inRun = true
	v := r.version
	r.mu.Unlock()
	for i, f := range r.snap.files {
		if f.version == uint(v) {
			r.report(progress.Step{N: i + 1, Total: len(r.snap.files), Name: f.name})
		}
	}
	err := r.Driver.Run(body)
	if err == nil {
		return nil
	}
	r.mu.Lock()
	r.bad = true
	r.mu.Unlock()
	f, _ := r.snap.fileFor(uint(v))
	return newError(f, err)
}

// running reports the migration whose Run had started when the run ended.
func (r *recorder) running() (uint, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return uint(r.version), r.inRun
}

// failed reports the migration that was being applied when an error that did not come
// from its own statements (bookkeeping, connection loss) ended the run.
func (r *recorder) failed() (uint, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return uint(r.version), r.inRun && !r.bad
}

// tracker dials the migration's connections so they can be cancelled and closed when
// ctx ends; golang-migrate's Up takes no context.
type tracker struct {
	dial pgconn.DialFunc

	mu      sync.Mutex
	aborted bool
	conns   []net.Conn
	pgConns []*pgconn.PgConn
}

func (t *tracker) Dial(ctx context.Context, network, addr string) (net.Conn, error) {
	t.mu.Lock()
	aborted := t.aborted
	t.mu.Unlock()
	if aborted {
		return nil, errors.New("migration canceled")
	}
	c, err := t.dial(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.aborted {
		c.Close()
		return nil, errors.New("migration canceled")
	}
	t.conns = append(t.conns, c)
	return c, nil
}

func (t *tracker) addPg(c *pgconn.PgConn) {
	t.mu.Lock()
	t.pgConns = append(t.pgConns, c)
	t.mu.Unlock()
}

// abort cancels the statements in flight, then closes every connection and refuses new
// ones.
func (t *tracker) abort() {
	t.mu.Lock()
	pgConns := append([]*pgconn.PgConn(nil), t.pgConns...)
	t.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), cancelGrace)
	defer cancel()
	for _, c := range pgConns {
		_ = c.CancelRequest(ctx)
	}
	t.mu.Lock()
	t.aborted = true
	conns := t.conns
	t.conns = nil
	t.mu.Unlock()
	for _, c := range conns {
		c.Close()
	}
}
