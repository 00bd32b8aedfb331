package pool

import (
	"context"
	crand "crypto/rand"
	"encoding/hex"
	"github.com/pgtestproxy/pgtestproxy/internal/leasemode"
	"github.com/pgtestproxy/pgtestproxy/internal/pgerr"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/pgtestproxy/pgtestproxy/internal/testpg"
	"github.com/pgtestproxy/pgtestproxy/migrations"
)

func TestMain(m *testing.M) { os.Exit(testpg.Main(m)) }

// The tests use the real migrations package: pool's production code never imports it
// (cmd connects the two), but a test of templates is only honest with real migrations.

// fixture is one test's upstream namespace: a catalog and a prefix of its own, so tests
// run in parallel on one server, all dropped when the test ends.
type fixture struct {
	t       testing.TB
	admin   string // URL of the maintenance database
	catalog string
	prefix  string
}

func newFixture(t testing.TB) *fixture {
	t.Helper()
	var b [4]byte
	_, _ = crand.Read(b[:])
	id := hex.EncodeToString(b[:])
	// The catalog is named after the test; the prefix must stay short (at most 32 bytes,
	// and the pool appends up to 28), so it is random.
	f := &fixture{t: t, admin: testpg.AdminURL(t), catalog: testpg.UniqueName(t, "pgtpcat_"), prefix: "tp" + id + "_"}
	t.Cleanup(f.dropAll)
	return f
}

// config returns a Config for f with small, test-friendly settings.
func (f *fixture) config(templates map[string]Migrator) Config {
	return Config{
		ConnString:     f.admin,
		Templates:      templates,
		CatalogDB:      f.catalog,
		Prefix:         f.prefix,
		PoolSize:       2,
		AcquireTimeout: 30 * time.Second,
		Logger:         zaptest.NewLogger(f.t, zaptest.Level(zap.WarnLevel)),
	}
}

// pool starts a pool closed when the test ends.
func (f *fixture) pool(cfg Config) *Pool {
	f.t.Helper()
	p, err := New(f.t.Context(), cfg)
	if err != nil {
		f.t.Fatalf("New: %v", err)
	}
	f.t.Cleanup(func() { p.Close() })
	return p
}

// dropAll drops every database the test's pools could have made, and the catalog.
func (f *fixture) dropAll() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c, err := pgx.Connect(ctx, f.admin)
	if err != nil {
		f.t.Errorf("clean up: %v", err)
		return
	}
	defer c.Close(ctx)
	rows, _ := c.Query(ctx, `SELECT datname, datistemplate AND datconnlimit <> -2 FROM pg_database
		WHERE starts_with(datname, $1) OR datname = $2`, f.prefix, f.catalog)
	type db struct {
		name     string
		template bool
	}
	dbs, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (db, error) {
		var d db
		return d, r.Scan(&d.name, &d.template)
	})
	if err != nil {
		f.t.Errorf("clean up: %v", err)
		return
	}
	for _, d := range dbs {
		if d.template {
			if _, err := c.Exec(ctx, "ALTER DATABASE "+ident(d.name)+" IS_TEMPLATE false"); err != nil {
				f.t.Errorf("clean up: unseal %s: %v", d.name, err)
			}
		}
		if _, err := c.Exec(ctx, "DROP DATABASE IF EXISTS "+ident(d.name)+" WITH (FORCE)"); err != nil {
			f.t.Errorf("clean up %s: %v", d.name, err)
		}
	}
}

// catalogURL is the URL of f's catalog database, with the current catalog version's
// schema as the search path.
func (f *fixture) catalogURL() string {
	u, err := url.Parse(testpg.URL(f.t, f.catalog))
	if err != nil {
		f.t.Fatal(err)
	}
	q := u.Query()
	q.Set("search_path", catalogSchema(CatalogVersion))
	u.RawQuery = q.Encode()
	return u.String()
}

// queryInt runs a query returning one integer on the database at url.
func queryInt(t testing.TB, url, sql string, args ...any) int {
	t.Helper()
	return queryRow[int](t, url, sql, args...)
}

// queryRow runs a query returning one value on the database at url.
func queryRow[T any](t testing.TB, url, sql string, args ...any) T {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	var v T
	if err := c.QueryRow(ctx, sql, args...).Scan(&v); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return v
}

func dbExists(t testing.TB, name string) bool {
	t.Helper()
	return queryInt(t, testpg.AdminURL(t), "SELECT count(*) FROM pg_database WHERE datname = $1", name) == 1
}

// eventually polls cond until it holds or the deadline passes.
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// migDir is a migrations directory on disk the test can edit.
type migDir struct {
	t   testing.TB
	dir string
	*migrations.Dir
}

func newMigDir(t testing.TB, files map[string]string) *migDir {
	t.Helper()
	dir := t.TempDir()
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	d, err := migrations.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	return &migDir{t: t, dir: dir, Dir: d}
}

func (m *migDir) write(name, content string) {
	m.t.Helper()
	if err := os.WriteFile(filepath.Join(m.dir, name), []byte(content), 0o644); err != nil {
		m.t.Fatal(err)
	}
}

// counting counts the builds (Migrate calls) of a Migrator.
type counting struct {
	Migrator
	builds atomic.Int32
}

func (c *counting) Migrate(ctx context.Context, connString, hash string) error {
	c.builds.Add(1)
	return c.Migrator.Migrate(ctx, connString, hash)
}

// acquire leases a clone, failing the test on error.
func acquire(t testing.TB, p *Pool, database string, mode leasemode.Mode) *Lease {
	t.Helper()
	l, err := p.Acquire(t.Context(), database, mode)
	if err != nil {
		t.Fatalf("Acquire(%q, %s): %v", database, mode, err)
	}
	return l
}

// connect opens a connection to a lease's clone, closed when the test ends.
func connect(t testing.TB, l *Lease) *pgconn.PgConn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := pgconn.ConnectConfig(ctx, l.ConnConfig())
	if err != nil {
		t.Fatalf("connect to clone %s: %v", l.Database(), err)
	}
	t.Cleanup(func() { c.Close(context.Background()) })
	return c
}

// query runs sql on c and returns the first column of the first row ("" if none).
func query(t testing.TB, c *pgconn.PgConn, sql string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	res, err := c.Exec(ctx, sql).ReadAll()
	if err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	if len(res) == 0 || len(res[len(res)-1].Rows) == 0 {
		return ""
	}
	return string(res[len(res)-1].Rows[0][0])
}

// columns lists a table's columns in a clone, comma-separated.
func columns(t testing.TB, l *Lease, table string) string {
	t.Helper()
	return query(t, connect(t, l), "SELECT string_agg(column_name, ',' ORDER BY ordinal_position) FROM information_schema.columns WHERE table_name = '"+table+"'")
}

// closer records whether it was closed.
type closer struct {
	mu     sync.Mutex
	closed int
}

func (c *closer) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closed++
	return nil
}

func (c *closer) times() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closed
}

// sqlStateOf returns the SQLSTATE an error carries for the client.
func sqlStateOf(err error) string {
	return pgerr.SQLState(err)
}

func mustContain(t testing.TB, s string, wants ...string) {
	t.Helper()
	for _, w := range wants {
		if !strings.Contains(s, w) {
			t.Errorf("%q does not mention %q", s, w)
		}
	}
}

var simpleSchema = map[string]string{
	"001_users.up.sql": "CREATE TABLE users (id serial PRIMARY KEY, name text NOT NULL);\n",
	"002_posts.up.sql": "CREATE TABLE posts (id serial PRIMARY KEY, user_id int REFERENCES users);\nINSERT INTO users (name) VALUES ('seed');\n",
}

// acquireRacing acquires n db-mode leases of the default template at once, taking
// turns over the pools ps; each is released (clean as given) when the test ends.
func acquireRacing(t testing.TB, ps []*Pool, n int, clean bool) []*Lease {
	t.Helper()
	var wg sync.WaitGroup
	leases := make([]*Lease, n)
	errs := make([]error, n)
	for i := range leases {
		wg.Go(func() { leases[i], errs[i] = ps[i%len(ps)].Acquire(t.Context(), "", leasemode.DB) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
		l := leases[i]
		t.Cleanup(func() { l.Release(context.Background(), clean) })
	}
	return leases
}
