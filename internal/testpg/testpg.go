// Package testpg gives every test in this repository a real PostgreSQL server: one
// embedded server per `go test` process (internal/pgserver, data kept on the tmpfs
// between runs), or the server named by PGTESTPROXY_TEST_DATABASE when that is set, and a
// database of its own per test so tests run in parallel.
//
// A package that uses it runs its tests through Main so the server is stopped at the end:
//
//	func TestMain(m *testing.M) { os.Exit(testpg.Main(m)) }
package testpg

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgtestproxy/pgtestproxy/internal/pgserver"
)

// EnvDatabase names an existing server to test against instead of the embedded one: a
// URL or DSN of a role with CREATEDB (superuser for the tests that need it).
const EnvDatabase = "PGTESTPROXY_TEST_DATABASE"

// EnvDataDir, when set, is the data directory of the embedded test server instead of
// the default beside the proxy's own (so that two checkouts tested at once on one
// machine each get a server of their own).
const EnvDataDir = "PGTESTPROXY_TEST_DATA_DIR"

var shared struct {
	once   sync.Once
	server *pgserver.Server
	admin  string // URL of the maintenance database
	err    error
}

// Main runs m and then releases the shared server, if this process started using it.
func Main(m *testing.M) int {
	code := m.Run()
	if shared.server != nil {
		if err := shared.server.Close(); err != nil {
			fmt.Fprintln(os.Stderr, "testpg: stop server:", err)
		}
	}
	return code
}

// AdminURL returns a URL of the shared server's maintenance database ("postgres"),
// starting the server on first use.
func AdminURL(t testing.TB) string {
	t.Helper()
	shared.once.Do(func() { shared.admin, shared.server, shared.err = startShared() })
	if shared.err != nil {
		t.Fatalf("test server: %v", shared.err)
	}
	return shared.admin
}

func startShared() (string, *pgserver.Server, error) {
	if dsn := os.Getenv(EnvDatabase); dsn != "" {
		return dsn, nil, nil
	}
	bin, err := pgserver.FindBinDir()
	if err != nil {
		return "", nil, err
	}
	major, err := pgserver.MajorVersion(bin)
	if err != nil {
		return "", nil, err
	}
	def, _ := pgserver.DefaultDataDir(major)
	dataDir := filepath.Join(filepath.Dir(def), "test-"+filepath.Base(def))
	if d := os.Getenv(EnvDataDir); d != "" {
		dataDir = d
	}
	// The server outlives any one test; its life is bounded by Main.
	// When this process starts the server nobody else uses it, so whatever databases it
	// holds were left by test runs killed before their cleanup (the data directory is the
	// tests' alone); OnStart drops them before another process can attach.
	s, err := pgserver.Start(context.Background(), pgserver.Config{BinDir: bin, DataDir: dataDir,
		OnStart: func(ctx context.Context, admin string) error { dropLeftovers(ctx, admin); return nil }})
	if err != nil {
		return "", nil, err
	}
	return s.ConnString("postgres"), s, nil
}

// dropLeftovers drops every database but the system ones. It is best effort: a
// leftover it cannot drop is reported on stderr and costs only disk.
func dropLeftovers(ctx context.Context, admin string) {
	warn := func(err error) { fmt.Fprintln(os.Stderr, "testpg: drop leftover test databases:", err) }
	c, err := pgx.Connect(ctx, admin)
	if err != nil {
		warn(err)
		return
	}
	defer c.Close(ctx)
	// An invalid database (datconnlimit -2, left by an interrupted DROP) cannot be
	// altered, so one that is also a template cannot be dropped: skip it.
	rows, _ := c.Query(ctx, `SELECT datname, datistemplate FROM pg_database
		WHERE datname NOT IN ('postgres', 'template0', 'template1')
		AND NOT (datistemplate AND datconnlimit = -2)`)
	type db struct {
		Name     string
		Template bool
	}
	dbs, err := pgx.CollectRows(rows, pgx.RowToStructByPos[db])
	if err != nil {
		warn(err)
		return
	}
	for _, d := range dbs {
		id := pgx.Identifier{d.Name}.Sanitize()
		if d.Template { // a template must be unmarked before it can be dropped
			if _, err := c.Exec(ctx, "ALTER DATABASE "+id+" IS_TEMPLATE false"); err != nil {
				warn(fmt.Errorf("%s: %w", d.Name, err))
				continue
			}
		}
		if _, err := c.Exec(ctx, "DROP DATABASE "+id+" WITH (FORCE)"); err != nil {
			warn(fmt.Errorf("%s: %w", d.Name, err))
		}
	}
}

// URL returns the URL of database db on the shared server.
func URL(t testing.TB, db string) string {
	t.Helper()
	u, err := url.Parse(AdminURL(t))
	if err != nil || u.Scheme == "" {
		t.Fatalf("%s must be a postgres:// URL to derive per-test databases: %v", EnvDatabase, err)
	}
	u.Path = "/" + db
	return u.String()
}

// NewDatabase creates an empty database for t, dropped when t ends, and returns its URL
// and name.
func NewDatabase(t testing.TB) (dbURL, name string) {
	t.Helper()
	name = UniqueName(t, "t_")
	Exec(t, AdminURL(t), "CREATE DATABASE "+pgx.Identifier{name}.Sanitize())
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := exec(ctx, shared.admin, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)"); err != nil {
			t.Errorf("drop test database %s: %v", name, err)
		}
	})
	return URL(t, name), name
}

var notIdent = regexp.MustCompile(`[^a-z0-9_]+`)

// UniqueName returns prefix + a form of t's name + a random suffix, usable as a
// PostgreSQL identifier (at most 63 bytes).
func UniqueName(t testing.TB, prefix string) string {
	t.Helper()
	base := notIdent.ReplaceAllString(strings.ToLower(t.Name()), "_")
	if len(base) > 40 {
		base = base[len(base)-40:]
	}
	var b [4]byte
	_, _ = rand.Read(b[:])
	return prefix + strings.Trim(base, "_") + "_" + hex.EncodeToString(b[:])
}

// Exec runs sql on the database at dbURL, failing t on error.
func Exec(t testing.TB, dbURL, sql string, args ...any) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := exec(ctx, dbURL, sql, args...); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

func exec(ctx context.Context, dbURL, sql string, args ...any) error {
	c, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		return err
	}
	defer c.Close(ctx)
	_, err = c.Exec(ctx, sql, args...)
	return err
}
