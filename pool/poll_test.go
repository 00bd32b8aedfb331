package pool

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/pgtestproxy/pgtestproxy/internal/leasemode"
)

// TestLoneWaiterPollsRarely: with no other pool alive on the catalog, a waiting
// Acquire does not poll the catalog every pollInterval (nothing but this process can
// ready a clone, and this process wakes it): in a window of 30 pollIntervals it claims
// at most once per lonePollInterval, plus one in flight at each end. Before, it claimed
// about 30 times.
func TestLoneWaiterPollsRarely(t *testing.T) {
	t.Parallel()
	p := oneClonePool(t)
	held := acquire(t, p, "", leasemode.Tx) // the only clone there may be
	defer held.Release(t.Context(), false)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	waited := make(chan error, 1)
	go func() {
		l, err := p.Acquire(ctx, "", leasemode.DB)
		if l != nil {
			l.Release(context.Background(), false)
			err = errors.New("a db-mode lease at MaxClones with the only clone leased")
		}
		waited <- err
	}()
	eventually(t, "the db-mode Acquire to wait", func() bool {
		g := p.active()
		return len(g) == 1 && g[0].dbWaiters.Load() == 1
	})
	before, start := p.counters.dbClaims.Load(), time.Now()
	<-time.After(30 * pollInterval) // the window observed
	claims := p.counters.dbClaims.Load() - before
	polls := int64(time.Since(start)/lonePollInterval) + 2
	cancel()
	if err := <-waited; !errors.Is(err, context.Canceled) {
		t.Errorf("db-mode Acquire ended with %v, want the test's cancel", err)
	}
	if claims > polls {
		t.Errorf("a lone waiting db-mode Acquire claimed %d times in %v, want at most %d", claims, time.Since(start), polls)
	}
}
