package pool

import (
	"fmt"
	"testing"
	"time"

	"github.com/pgtestproxy/pgtestproxy/internal/leasemode"
	"github.com/pgtestproxy/pgtestproxy/internal/pgserver"
)

// TestFailedDropRetried: a clone whose drop fails (a prepared transaction in it blocks
// DROP DATABASE, even WITH (FORCE)) is not counted as dropped by GC and not left
// dropping: the pool retries it until it is gone, without another GC.
func TestFailedDropRetried(t *testing.T) {
	t.Parallel()
	srv := privateServer(t, pgserver.Config{Settings: map[string]string{"max_prepared_transactions": "4"}})
	f := &fixture{t: t, admin: srv.ConnString("postgres"), catalog: "pgtestproxy", prefix: "pgtp_"}
	cfg := f.config(map[string]Migrator{"": newMigDir(t, simpleSchema)})
	cfg.TTL = time.Millisecond // every ready clone is idle for GC
	p := f.pool(cfg)
	acquire(t, p, "", leasemode.Tx).Release(t.Context(), true) // built, with ready clones
	catalog := srv.ConnString("pgtestproxy") + "&search_path=" + catalogSchema(CatalogVersion)
	var stuck string
	eventually(t, "a ready clone", func() bool {
		stuck = queryRow[string](t, catalog, "SELECT coalesce(min(datname), '') FROM migrated_dbs WHERE state = 'ready'")
		return stuck != ""
	})
	clone := srv.ConnString(stuck)
	execAdmin(t, clone, "BEGIN; CREATE TABLE blocker (); PREPARE TRANSACTION 'pgtp_blocker'")
	r, err := p.GC(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range r.Clones {
		if name == stuck {
			t.Fatalf("GC reports %s dropped, but a prepared transaction blocks its drop", stuck)
		}
	}
	exists := func() bool {
		return queryInt(t, srv.ConnString("postgres"), "SELECT count(*) FROM pg_database WHERE datname = $1", stuck) == 1
	}
	if !exists() {
		t.Fatalf("%s was dropped despite its prepared transaction", stuck)
	}
	execAdmin(t, clone, "COMMIT PREPARED 'pgtp_blocker'")
	eventually(t, "the failed drop retried until the clone is gone", func() bool {
		return !exists() && queryInt(t, catalog, "SELECT count(*) FROM migrated_dbs WHERE datname = $1", stuck) == 0
	})
}

// A clone this pool claims for a drop (trim, eviction, retirement, the idle-clone part
// of GC) is never taken by a GC's reclaim running at the same time as a leftover of this pool's:
// between the claim's UPDATE committing and the drop marking the clone busy, reclaim
// would see a dropping row of its own that nothing works on, and report it reclaimed.
// The clones are catalog rows with no database (dropping one only forgets it), so
// claims and GCs cycle fast enough to meet in that window.
func TestGCNeverReclaimsOwnClaims(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	cfg := f.config(map[string]Migrator{"": newMigDir(t, simpleSchema)})
	cfg.PoolSize = 0
	cfg.NoStartupGC = true // its forgetting of rows with no database would take the test's
	p := f.pool(cfg)
	ctx := t.Context()
	const rounds = 400
	stop := make(chan struct{})
	gcDone := make(chan []string)
	go func() {
		var got []string
		defer func() { gcDone <- got }()
		for {
			select {
			case <-stop:
				return
			default:
			}
			names, err := p.reclaim(ctx) // GC's first step, without forgetting rows with no database
			p.unbusyAll(names)
			if err != nil {
				t.Errorf("reclaim: %v", err)
				return
			}
			got = append(got, names...)
		}
	}()
	for i := range rounds {
		name := fmt.Sprintf("%sclaim_%d", p.namePrefix(), i)
		if _, err := p.cat.Exec(ctx, `INSERT INTO migrated_dbs (datname, template_db, state, owner)
			VALUES ($1, 'none', 'ready', $2)`, name, p.owner); err != nil {
			t.Fatal(err)
		}
		names, err := p.claimNames(ctx, `UPDATE migrated_dbs SET state = 'dropping', owner = $2
			WHERE datname = $1 RETURNING datname`, name, p.owner)
		if err != nil || len(names) != 1 {
			t.Fatalf("claim %s: %v, %v", name, names, err)
		}
		p.dropAll(ctx, names)
		p.unbusyAll(names)
	}
	close(stop)
	if got := <-gcDone; len(got) > 0 {
		t.Errorf("reclaim took %d clones the pool itself was dropping: %v", len(got), got)
	}
}
