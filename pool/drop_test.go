package pool

import (
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
