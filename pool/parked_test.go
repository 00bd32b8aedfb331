package pool

import (
	"testing"

	"github.com/pgtestproxy/pgtestproxy/internal/leasemode"
)

// TestTxParked: a clean tx-mode clone with a kept resource stays leased by this pool in
// the catalog (no other process can take it) while it waits for this process's next
// tx lease; SHOW POOLS counts it ready and SHOW LEASES leaves it out; Close gives it
// back to the catalog as ready and closes what it kept.
func TestTxParked(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	cfg := f.config(map[string]Migrator{"": newMigDir(t, simpleSchema)})
	cfg.PoolSize = 1
	p := f.pool(cfg)

	first := acquire(t, p, "", leasemode.Tx)
	kept := &closer{}
	first.Keep(kept)
	first.Release(t.Context(), true)
	state := func() (string, int64) {
		st := queryRow[string](t, f.catalogURL(), "SELECT state FROM migrated_dbs WHERE datname = $1", first.Database())
		owner := queryRow[int64](t, f.catalogURL(), "SELECT coalesce(owner, 0) FROM migrated_dbs WHERE datname = $1", first.Database())
		return st, owner
	}
	if st, owner := state(); st != "leased" || owner != p.owner {
		t.Fatalf("parked clone is %s by owner %d in the catalog, want leased by this pool (%d)", st, owner, p.owner)
	}
	pools, err := p.Stats(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if len(pools) != 1 || pools[0].Leased != 0 || pools[0].Ready < 1 {
		t.Fatalf("Stats() = %+v, want the parked clone ready and no lease", pools)
	}
	leases, err := p.Leases(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if len(leases) != 0 {
		t.Fatalf("Leases() = %+v, want none (the clone is parked)", leases)
	}

	second := acquire(t, p, "", leasemode.Tx)
	if second.Database() != first.Database() || second.Kept() != kept {
		t.Fatalf("tx lease got %s, want the parked %s with its kept resource", second.Database(), first.Database())
	}
	leases, err = p.Leases(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if len(leases) != 1 || leases[0].Database != second.Database() || leases[0].Since.Before(second.since) {
		t.Fatalf("Leases() = %+v, want %s leased since %v", leases, second.Database(), second.since)
	}
	second.Keep(kept)
	second.Release(t.Context(), true)

	p.Close()
	if kept.times() != 1 {
		t.Fatalf("kept resource closed %d times at Close, want 1", kept.times())
	}
	if st, _ := state(); st != "ready" {
		t.Fatalf("parked clone is %s after Close, want ready for the next process", st)
	}
}

// TestTxClaimWaitsForEnding: a tx-mode Acquire that finds no parked clone while a
// lease of the template is ending (its holder resets its backend) waits for that
// clone rather than taking a clone without a backend; when the ending lease does not
// come back in time it takes another.
func TestTxClaimWaitsForEnding(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	cfg := f.config(map[string]Migrator{"": newMigDir(t, simpleSchema)})
	cfg.PoolSize = 1
	p := f.pool(cfg)

	a := acquire(t, p, "", leasemode.Tx)
	kept := &closer{}
	a.Keep(kept)
	eventually(t, "a clone without a kept backend ready", func() bool {
		pools, err := p.Stats(t.Context())
		return err == nil && len(pools) == 1 && pools[0].Ready >= 1
	})
	a.Ending()
	got := make(chan *Lease, 1)
	go func() { got <- acquire(t, p, "", leasemode.Tx) }()
	eventually(t, "the Acquire waiting for the ending lease", func() bool {
		p.mu.Lock()
		defer p.mu.Unlock()
		return p.ending[a.gen] != nil && p.ending[a.gen].waiting == 1
	})
	a.Release(t.Context(), true)
	b := <-got
	if b.Database() != a.Database() || b.Kept() != kept {
		t.Fatalf("tx lease got %s, want %s, released while it waited, with its kept resource", b.Database(), a.Database())
	}

	// Ending, then not released: the next Acquire gives up waiting and takes another.
	b.Ending()
	c := acquire(t, p, "", leasemode.Tx)
	if c.Database() == b.Database() {
		t.Fatal("two leases of one clone")
	}
	c.Release(t.Context(), false)
	b.Keep(kept)
	b.Release(t.Context(), false)
}

// TestTxParkedRetiredWithTemplate: when the migrations change, the clones parked with
// the old template are dropped and what they kept is closed; a lease of the old
// template released after the change is not parked.
func TestTxParkedRetiredWithTemplate(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	d := newMigDir(t, simpleSchema)
	cfg := f.config(map[string]Migrator{"": d})
	cfg.PoolSize = 1
	p := f.pool(cfg)

	parked := acquire(t, p, "", leasemode.Tx)
	held := acquire(t, p, "", leasemode.Tx)
	kept, keptHeld := &closer{}, &closer{}
	parked.Keep(kept)
	parked.Release(t.Context(), true)

	d.write("003_more.up.sql", "CREATE TABLE more (id int);\n")
	next := acquire(t, p, "", leasemode.Tx)
	defer next.Release(t.Context(), false)
	if next.Database() == parked.Database() || next.gen == parked.gen {
		t.Fatalf("after the migrations changed, tx lease got %s of the old template", next.Database())
	}
	eventually(t, "the old template's parked clone dropped", func() bool {
		return kept.times() == 1 && !dbExists(t, parked.Database())
	})
	held.Keep(keptHeld)
	held.Release(t.Context(), true)
	if keptHeld.times() != 1 {
		t.Fatalf("a lease of the replaced template kept its resource (closed %d times), want it closed", keptHeld.times())
	}
	p.mu.Lock()
	n := len(p.parked[held.gen])
	p.mu.Unlock()
	if n != 0 {
		t.Fatalf("%d clones of the replaced template parked", n)
	}
}
