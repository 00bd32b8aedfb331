package pool

import (
	"context"
	"sync"
	"testing"

	"github.com/pgtestproxy/pgtestproxy/internal/leasemode"
)

// TestRefillStopsForLeftWaiters: the clones the refill queued for a burst of waiting
// Acquires are not made once those clients have left: at most the ones already being
// made (RefillParallelism) and the pool's own come out of it. Before, every queued
// creation ran (twelve clones for twelve waiters who had gone).
func TestRefillStopsForLeftWaiters(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	cfg := f.config(map[string]Migrator{"": newMigDir(t, simpleSchema)})
	cfg.PoolSize = 1
	cfg.RefillParallelism = 1
	p := f.pool(cfg)
	acquire(t, p, "", leasemode.DB).Release(t.Context(), false) // built
	g := p.active()[0]
	eventually(t, "the refill to settle", func() bool { return g.inflight.Load() == 0 })
	const burst = 12
	ctx, cancel := context.WithCancel(t.Context())
	var wg sync.WaitGroup
	var mu sync.Mutex
	var got []*Lease
	for range burst {
		wg.Go(func() {
			if l, err := p.Acquire(ctx, "", leasemode.DB); err == nil {
				mu.Lock()
				got = append(got, l)
				mu.Unlock()
			}
		})
	}
	eventually(t, "the burst's creations to be queued", func() bool { return g.inflight.Load() >= burst-2 })
	made := p.counters.clonesMade.Load()
	cancel() // the clients leave
	wg.Wait()
	for _, l := range got {
		l.Release(t.Context(), false)
	}
	eventually(t, "the refill to settle", func() bool { return g.inflight.Load() == 0 })
	after := p.counters.clonesMade.Load() - made
	// Made after the clients left: those being made when they left, the pool's one, and
	// one the refill may have started before it saw them go.
	if limit := int64(cfg.RefillParallelism + cfg.PoolSize + 1 + len(got)); after > limit {
		t.Errorf("%d clones made after the %d waiting clients left (%d of them had got one), want at most %d",
			after, burst, len(got), limit)
	}
}
