package pool

import (
	"fmt"
	"testing"
	"time"

	"github.com/pgtestproxy/pgtestproxy/internal/leasemode"
)

// TestDBWaiterGetsRoomFromKeptClone: at MaxClones, with every clone kept by this
// process for tx mode (parked with its backend, or ready with it), a db-mode Acquire
// is not starved: one kept clone is dropped to make room for a clone it can take.
// Before, it waited for AcquireTimeout and got 53300.
func TestDBWaiterGetsRoomFromKeptClone(t *testing.T) {
	t.Parallel()
	for _, n := range []int{1, 2} { // 1: the clone is parked; 2: one parked, one ready kept_by this pool
		t.Run(fmt.Sprintf("clones=%d", n), func(t *testing.T) {
			t.Parallel()
			f := newFixture(t)
			cfg := f.config(map[string]Migrator{"": newMigDir(t, simpleSchema)})
			cfg.PoolSize = 1 // one parks; a second clean tx release goes back ready, kept
			cfg.MaxClones = n
			cfg.AcquireTimeout = 10 * time.Second
			p := f.pool(cfg)
			var txs []*Lease
			for range n { // every clone there may be
				txs = append(txs, acquire(t, p, "", leasemode.Tx))
			}
			kept := make([]*closer, n)
			for i, tx := range txs {
				kept[i] = &closer{}
				tx.Keep(kept[i])
				tx.Release(t.Context(), true)
			}
			l, err := p.Acquire(t.Context(), "", leasemode.DB)
			if err != nil {
				t.Fatalf("db-mode Acquire at MaxClones with every clone kept for tx mode: %v", err)
			}
			l.Release(t.Context(), false)
			// The ready kept clone goes first (the parked ones are tx mode's stock).
			if closed := kept[n-1].times(); closed != 1 {
				t.Errorf("the dropped clone's kept backend was closed %d times, want 1", closed)
			}
			if n == 2 && kept[0].times() != 0 {
				t.Error("the parked clone was dropped while a ready kept one was there")
			}
		})
	}
}
