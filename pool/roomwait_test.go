package pool

import (
	"testing"
	"time"

	"github.com/pgtestproxy/pgtestproxy/internal/leasemode"
)

// TestRefillEvictsForRecentWaiter: at MaxClones, the refill of a template whose
// client has just stopped waiting (it gave up, as a client retrying with a short
// timeout does between two tries) still evicts another template's idle clone for it.
// Before, the refill evicted only while a client waited at that very moment, and a
// refill that the cap's backoff delayed past each short wait never did; and when it
// did, another template's refill of its warm stock could take the room first, whose
// clone it then evicted again, and so on (TestCapHolds timed out so under CI load).
func TestRefillEvictsForRecentWaiter(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	cfg := f.config(map[string]Migrator{
		"a": newMigDir(t, map[string]string{"001_a.up.sql": "CREATE TABLE a (id int);"}),
		"b": newMigDir(t, map[string]string{"001_b.up.sql": "CREATE TABLE b (id int);"}),
	})
	cfg.MaxClones, cfg.PoolSize, cfg.AcquireTimeout = 1, 1, 300*time.Millisecond
	p := f.pool(cfg)
	cat := f.catalogURL()
	la := acquire(t, p, "a", leasemode.DB) // the one clone there may be
	// b's client gives up at the cap; none waits for b from then on.
	if _, err := p.Acquire(t.Context(), "b", leasemode.DB); sqlStateOf(err) != "53300" {
		t.Fatalf("b at the cap: %v, want 53300", err)
	}
	b := p.templates["b"].cur.Load()
	la.Release(t.Context(), true) // unchanged: back in the pool, idle, a's
	eventually(t, "a's clone to be ready again", func() bool {
		return queryInt(t, cat, "SELECT count(*) FROM migrated_dbs WHERE state = 'ready'") == 1
	})
	p.kickRefill()
	eventually(t, "a clone of b, whose client gave up just before", func() bool {
		return queryInt(t, cat, "SELECT count(*) FROM migrated_dbs WHERE state = 'ready' AND template_db = $1", b.datname) == 1
	})
}
