package pool

import (
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/pgtestproxy/pgtestproxy/internal/leasemode"
	"github.com/pgtestproxy/pgtestproxy/internal/pgserver"
)

// TestUpstreamRestart restarts the upstream under a live pool holding a lease. Another
// pool's GC, run as soon as the server answers again, reclaims nothing: not the live
// pool's lease, and not even the lease of an owner whose heartbeat is an hour old,
// since the restart (pg_postmaster_start_time) gives every owner a fresh grace period.
// Once that owner's grace has passed it is reclaimed. The live pool takes its lock
// again without waiting for its next GC tick.
func TestUpstreamRestart(t *testing.T) {
	t.Parallel()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	srv, scfg := privateServerConfig(t, pgserver.Config{Port: port})
	f := &fixture{t: t, admin: srv.ConnString("postgres"), catalog: "pgtestproxy", prefix: "pgtp_"}
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
	srv, err = pgserver.Start(t.Context(), scfg)
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
