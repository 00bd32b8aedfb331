package pool

import (
	"slices"
	"testing"

	"github.com/pgtestproxy/pgtestproxy/internal/leasemode"
)

// TestCloseFinishesQueuedDrops: drops queued when Close begins (here the trim of ready
// clones left by a burst, held back by the drop slots the test takes) are finished by
// Close, within its bound: a clean stop leaves no clone dropping for the next GC, and
// no database the catalog does not list.
func TestCloseFinishesQueuedDrops(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	cfg := f.config(map[string]Migrator{"": newMigDir(t, simpleSchema)})
	cfg.PoolSize = 1
	p, err := New(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	// A burst: four tx leases at once, so the refill makes clones for the waiters.
	var ls []*Lease
	for range 4 {
		ls = append(ls, acquire(t, p, "", leasemode.Tx))
	}
	for range cap(p.dropSem) { // every drop slot: the trim's drops queue
		p.dropSem <- struct{}{}
	}
	for _, l := range ls {
		l.Release(t.Context(), true) // no backend kept: back to the catalog as ready
	}
	cat := f.catalogURL()
	eventually(t, "the trim to claim the clones beyond the pool size", func() bool {
		return queryInt(t, cat, "SELECT count(*) FROM migrated_dbs WHERE state = 'dropping'") > 0
	})
	closed := make(chan struct{})
	go func() {
		p.Close()
		close(closed)
	}()
	eventually(t, "Close to begin", func() bool { return p.ctx.Err() != nil })
	for range cap(p.dropSem) {
		<-p.dropSem
	}
	<-closed
	if n := queryInt(t, cat, "SELECT count(*) FROM migrated_dbs WHERE state <> 'ready'"); n != 0 {
		t.Errorf("%d clones left for GC after a clean Close: %s", n,
			queryRow[string](t, cat, "SELECT string_agg(datname || ':' || state, ' ') FROM migrated_dbs WHERE state <> 'ready'"))
	}
	listed := queryRow[[]string](t, cat, `SELECT array(SELECT datname FROM migrated_dbs UNION ALL SELECT datname FROM template_dbs)`)
	dbs := queryRow[[]string](t, f.admin, "SELECT array(SELECT datname FROM pg_database WHERE starts_with(datname, $1))", f.prefix)
	for _, db := range dbs {
		if !slices.Contains(listed, db) {
			t.Errorf("database %s is left on the server, and the catalog does not list it", db)
		}
	}
}
