package pool

import (
	"testing"

	"github.com/pgtestproxy/pgtestproxy/internal/leasemode"
)

// Two pools on one upstream share its ready clones, and each counts only its own
// waiters: a pool's trim must not drop the clones another has just made (for its
// waiting clients), only ready clones beyond PoolSize that have gone unused for
// TrimIdle. Before, with three proxies on one server, one made 13 clones and dropped 24.
func TestTrimLeavesFreshClones(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	cfg := f.config(map[string]Migrator{"": newMigDir(t, simpleSchema)})
	cfg.PoolSize = 1
	a := f.pool(cfg)
	acquire(t, a, "", leasemode.DB).Release(t.Context(), false) // built
	b := f.pool(cfg)
	acquire(t, b, "", leasemode.DB).Release(t.Context(), false) // b knows the template
	ga := a.active()[0]
	for range 3 { // made by a, as for a burst of its clients
		if _, err := a.createClone(t.Context(), ga, ""); err != nil {
			t.Fatal(err)
		}
	}
	ready := func() int {
		return queryInt(t, f.catalogURL(), "SELECT count(*) FROM migrated_dbs WHERE state = 'ready'")
	}
	gb := b.active()[0]
	eventually(t, "the refills to settle", func() bool { return ga.inflight.Load() == 0 && gb.inflight.Load() == 0 })
	n := ready()
	if n <= cfg.PoolSize+1 {
		t.Fatalf("%d ready clones, want more than the pool size", n)
	}
	settle := func() {
		t.Helper()
		b.refill(t.Context())
		eventually(t, "b's trim to end", func() bool { return !gb.trimming.Load() })
	}
	settle()
	if got := ready(); got < n {
		t.Errorf("b trimmed %d of the clones a had just made", n-got)
	}

	// Unused for longer than TrimIdle: trimmed down to PoolSize.
	execAdmin(t, f.catalogURL(), "UPDATE migrated_dbs SET last_used = now() - interval '1 hour' WHERE state = 'ready'")
	settle()
	eventually(t, "the idle clones beyond the pool size to be trimmed", func() bool { return ready() == cfg.PoolSize })
}
