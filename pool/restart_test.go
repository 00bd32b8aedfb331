package pool

import (
	"errors"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/jackc/pgerrcode"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgtestproxy/pgtestproxy/internal/leasemode"
	"github.com/pgtestproxy/pgtestproxy/internal/pgserver"
)

// restartableServer starts a server of the test's own on a fixed free port (so that
// it can be started again at the same address) and a fixture on it.
func restartableServer(t *testing.T) (*pgserver.Server, pgserver.Config, *fixture) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	srv, scfg := privateServerConfig(t, pgserver.Config{Port: port})
	return srv, scfg, &fixture{t: t, admin: srv.ConnString("postgres"), catalog: "pgtestproxy", prefix: "pgtp_"}
}

// TestUpstreamRestart restarts the upstream under a live pool holding a lease. Another
// pool's GC, run as soon as the server answers again, reclaims nothing: not the live
// pool's lease, and not even the lease of an owner whose heartbeat is an hour old,
// since the restart (pg_postmaster_start_time) gives every owner a fresh grace period.
// Once that owner's grace has passed it is reclaimed. The live pool takes its lock
// again without waiting for its next GC tick.
func TestUpstreamRestart(t *testing.T) {
	t.Parallel()
	srv, scfg, f := restartableServer(t)
	d := newMigDir(t, simpleSchema)
	live := f.pool(f.config(map[string]Migrator{"": d}))
	lease := acquire(t, live, "", leasemode.DB)
	defer lease.Release(t.Context(), true)
	other := f.pool(f.config(map[string]Migrator{"": d}))
	catalog := srv.ConnString("pgtestproxy") + "&search_path=" + catalogSchema(CatalogVersion)
	// An owner last seen an hour ago, with no lock, leasing a clone.
	execAdmin(t, catalog, `INSERT INTO owners (id, pid, host, heartbeat, grace) VALUES (42, 1, 'gone', now() - interval '1 hour', interval '1 hour');
		INSERT INTO migrated_dbs (datname, template_db, state, owner) VALUES ('pgtp_v2_ghost', '', 'leased', 42)`)

	if err := srv.Close(); err != nil {
		t.Fatal(err)
	}
	srv, err := pgserver.Start(t.Context(), scfg)
	if err != nil {
		t.Fatalf("restart: %v", err)
	}
	t.Cleanup(func() { srv.Close() })
	back := time.Now()
	var r GCReport
	eventually(t, "the other pool's GC to work after the restart", func() bool {
		r, err = other.GC(t.Context())
		if len(r.Reclaimed) != 0 {
			t.Fatalf("GC right after the restart reclaimed %v", r.Reclaimed)
		}
		return err == nil
	})
	eventually(t, "the live pool to take its owner lock again", func() bool {
		return queryInt(t, catalog, "SELECT count(*) FROM owners o WHERE o.id = $1 AND "+fmt.Sprintf(ownerLocked, "o.id"), live.owner) == 1
	})
	t.Logf("owner lock re-taken %v after the upstream answered again", time.Since(back).Round(time.Millisecond))
	if got := query(t, connect(t, lease), "SELECT count(*) FROM users"); got != "1" {
		t.Fatalf("live lease's clone: %q users", got)
	}
	// The ghost's grace (from the restart) ends: now it is reclaimed, the live pool's
	// lease still not.
	execAdmin(t, catalog, "UPDATE owners SET grace = interval '0' WHERE id = 42")
	r, err = other.GC(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Reclaimed) != 1 || r.Reclaimed[0] != "pgtp_v2_ghost" {
		t.Fatalf("GC after the ghost's grace reclaimed %v, want only pgtp_v2_ghost", r.Reclaimed)
	}
}

// A clone that could not be made because the upstream went away (stopped, restarting)
// does not pause the template's refill for failureBackoff: the refill goes on as soon
// as the upstream answers again (seen in make stress: after an upstream restart under
// load, the refill stood still for a second after the server was back, and so did every
// client waiting for a clone). A failure of the work itself still pauses it
// (upstreamGone tells them apart).
func TestRefillNotPausedByUpstreamGone(t *testing.T) {
	t.Parallel()
	srv, scfg, f := restartableServer(t)
	p := f.pool(f.config(map[string]Migrator{"": newMigDir(t, simpleSchema)}))
	lease := acquire(t, p, "", leasemode.DB) // the template is built
	lease.Release(t.Context(), false)
	gens := p.active()
	if len(gens) != 1 {
		t.Fatalf("%d active generations, want 1", len(gens))
	}
	g := gens[0]
	paused := func() bool {
		g.mu.Lock()
		defer g.mu.Unlock()
		return time.Now().Before(g.backoff)
	}
	if err := srv.Close(); err != nil {
		t.Fatal(err)
	}
	g.inflight.Add(1)
	p.refillOne(g) // fails: nothing listens
	if paused() {
		t.Error("the refill was paused after the upstream went away")
	}
	// Back, so that the pool's close finishes its drops.
	srv, err := pgserver.Start(t.Context(), scfg)
	if err != nil {
		t.Fatalf("restart: %v", err)
	}
	t.Cleanup(func() { srv.Close() })
	defer p.Close() // before the server's cleanup
	// What tells the two apart: an upstream that went away, against the work's own
	// failure, which still pauses the refill.
	gone := p.upstreamErr("reserve clone", errors.New("dial tcp: connect: connection refused"))
	for _, tc := range []struct {
		err  error
		gone bool
	}{
		{gone, true},
		{fmt.Errorf("clone: %w", gone), true},
		{&pgconn.PgError{Code: pgerrcode.AdminShutdown}, true},
		{&pgconn.PgError{Code: pgerrcode.CannotConnectNow}, true},
		{&pgconn.PgError{Code: pgerrcode.ObjectInUse, Message: `source database "t" is being accessed by other users`}, false},
		{&pgconn.PgError{Code: pgerrcode.InsufficientPrivilege}, false},
		{errors.New("no SQLSTATE"), false},
	} {
		if got := upstreamGone(tc.err); got != tc.gone {
			t.Errorf("upstreamGone(%v) = %v, want %v", tc.err, got, tc.gone)
		}
	}
}
