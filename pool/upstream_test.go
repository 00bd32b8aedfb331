package pool

import (
	crand "crypto/rand"
	"encoding/hex"
	"github.com/pgtestproxy/pgtestproxy/internal/leasemode"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pgtestproxy/pgtestproxy/internal/pgserver"
	"github.com/pgtestproxy/pgtestproxy/internal/testpg"
)

// TestNonSuperuser runs a pool as a role that has CREATEDB and nothing more.
func TestNonSuperuser(t *testing.T) {
	t.Parallel()
	var b [4]byte
	_, _ = crand.Read(b[:])
	role := "pgtp_role_" + hex.EncodeToString(b[:])
	admin := testpg.AdminURL(t)
	execAdmin(t, admin, "CREATE ROLE "+ident(role)+" LOGIN CREATEDB NOSUPERUSER")
	// Cleanups run last-registered first: the pool closes, the fixture drops the role's
	// databases, then the role goes.
	t.Cleanup(func() { execAdmin(t, admin, "DROP ROLE IF EXISTS "+ident(role)) })
	f := newFixture(t)
	u, err := url.Parse(f.admin)
	if err != nil {
		t.Fatal(err)
	}
	u.User = url.User(role)
	cfg := f.config(map[string]Migrator{"": newMigDir(t, simpleSchema)})
	cfg.ConnString = u.String()
	p := f.pool(cfg)
	for _, mode := range []leasemode.Mode{leasemode.DB, leasemode.Tx, leasemode.DB} {
		l := acquire(t, p, "", mode)
		c := connect(t, l)
		if got := query(t, c, "SELECT current_user || ' ' || (SELECT count(*) FROM users)"); got != role+" 1" {
			t.Fatalf("%s lease: %q", mode, got)
		}
		l.Release(t.Context(), mode == leasemode.Tx)
	}
	if _, err := p.GC(t.Context()); err != nil {
		t.Fatal(err)
	}
	s, err := p.Stats(t.Context())
	if err != nil || s[0].Strategy == "" && p.major >= 15 {
		t.Fatalf("stats %+v, %v", s, err)
	}
}

// TestUpstreamLost: when the upstream goes away under a running pool, Acquire fails with
// SQLSTATE 08006 naming the address (never the password), and Close still returns.
func TestUpstreamLost(t *testing.T) {
	t.Parallel()
	srv := privateServer(t, pgserver.Config{MaxConnections: 50})
	u, _ := url.Parse(srv.ConnString("postgres"))
	u.User = url.UserPassword(pgserver.Superuser, "sekret-pw") // trust auth ignores it
	f := &fixture{t: t, admin: u.String(), catalog: "pgtestproxy", prefix: "pgtp_"}
	cfg := f.config(map[string]Migrator{"": newMigDir(t, simpleSchema)})
	cfg.AcquireTimeout = 5 * time.Second
	p := f.pool(cfg)
	acquire(t, p, "", leasemode.DB).Release(t.Context(), true)
	if err := srv.Close(); err != nil {
		t.Fatal(err)
	}
	var last error
	eventually(t, "Acquire to report the upstream unreachable", func() bool {
		_, last = p.Acquire(t.Context(), "", leasemode.DB)
		return sqlStateOf(last) == "08006"
	})
	mustContain(t, last.Error(), u.Host)
	if strings.Contains(last.Error(), "sekret-pw") {
		t.Fatalf("error leaks the password: %v", last)
	}
	p.Close()
}

// privateServer starts a PostgreSQL server of the test's own with cfg's settings (in
// a fresh data directory), stopped when the test ends. It fails (never skips) when the server
// does not start: a skip would hide a broken launcher.
func privateServer(t *testing.T, cfg pgserver.Config) *pgserver.Server {
	t.Helper()
	srv, _ := privateServerConfig(t, cfg)
	return srv
}

// privateServerConfig is privateServer that also returns the Config it started with,
// data directory included, to start the server again after a Close.
func privateServerConfig(t *testing.T, cfg pgserver.Config) (*pgserver.Server, pgserver.Config) {
	t.Helper()
	if os.Getenv("PGTESTPROXY_TEST_DATABASE") != "" {
		t.Skip("needs a server of its own")
	}
	base := os.TempDir()
	if fi, err := os.Stat("/dev/shm"); err == nil && fi.IsDir() {
		base = "/dev/shm"
	}
	dir, err := os.MkdirTemp(base, "pgtp-pool-test-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	cfg.DataDir = filepath.Join(dir, "data")
	srv, err := pgserver.Start(t.Context(), cfg)
	if err != nil {
		t.Fatalf("cannot start a private server: %v", err)
	}
	t.Cleanup(func() { srv.Close() })
	return srv, cfg
}
