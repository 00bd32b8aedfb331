package pool

import (
	"strconv"
	"testing"

	"github.com/pgtestproxy/pgtestproxy/internal/leasemode"
	"github.com/pgtestproxy/pgtestproxy/internal/testpg"
)

// lockHolder is the backend pid holding owner's lock, 0 when none does.
func lockHolder(t *testing.T, f *fixture, owner int64) int {
	t.Helper()
	return queryInt(t, f.catalogURL(), `SELECT coalesce(max(pid), 0) FROM pg_locks
		WHERE locktype = 'advisory' AND granted AND objsubid = 1 AND ((classid::int8 << 32) | objid::int8) = $1`, owner)
}

// TestLiveLeasesSurviveLostLock: the backend holding a live pool's owner lock goes (what
// an upstream restart looks like to the pool); another pool's GC run at once leaves the
// live pool's lease alone, and the live pool takes its lock again without waiting for
// its next GC tick.
func TestLiveLeasesSurviveLostLock(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	d := newMigDir(t, simpleSchema)
	live := f.pool(f.config(map[string]Migrator{"": d}))
	l := acquire(t, live, "", leasemode.DB)
	defer l.Release(t.Context(), true)
	other := f.pool(f.config(map[string]Migrator{"": d}))

	pid := lockHolder(t, f, live.owner)
	if pid == 0 {
		t.Fatal("live pool holds no owner lock")
	}
	execAdmin(t, testpg.AdminURL(t), "SELECT pg_terminate_backend("+itoa(pid)+", 30000)")
	if got := lockHolder(t, f, live.owner); got == pid {
		t.Fatalf("backend %d still holds the lock after pg_terminate_backend", pid)
	}
	r, err := other.GC(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Reclaimed) != 0 || !dbExists(t, l.Database()) {
		t.Fatalf("GC right after the lock was lost reclaimed a live pool's lease: %+v", r)
	}
	eventually(t, "the live pool to take its owner lock again", func() bool {
		got := lockHolder(t, f, live.owner)
		return got != 0 && got != pid
	})
	if r, err := other.GC(t.Context()); err != nil || len(r.Reclaimed) != 0 {
		t.Fatalf("GC after the lock was re-taken: %+v, %v", r, err)
	}
	if got := query(t, connect(t, l), "SELECT count(*) FROM users"); got != "1" {
		t.Fatalf("live lease's clone: %q users", got)
	}
}

func itoa(n int) string { return strconv.Itoa(n) }
