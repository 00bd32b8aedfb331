package pool

import (
	"testing"

	"github.com/pgtestproxy/pgtestproxy/internal/leasemode"
)

// AcquireReady claims a ready clone of the current template and never builds or
// waits: before the first build, and after a migration edit until the new template
// is built, it returns nothing. Current says whether a lease's template is still the
// one an Acquire would use.
func TestAcquireReadyNeverWaitsOrBuilds(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	m := newMigDir(t, simpleSchema)
	c := &counting{Migrator: m}
	p := f.pool(f.config(map[string]Migrator{"": c}))

	if l, err := p.AcquireReady(t.Context(), "app", leasemode.DB); l != nil || err != nil {
		t.Fatalf("before any build: AcquireReady = %v, %v; want nothing", l, err)
	}
	if n := c.builds.Load(); n != 0 {
		t.Fatalf("AcquireReady started %d builds", n)
	}

	if err := p.Prepare(t.Context(), "app"); err != nil {
		t.Fatal(err)
	}
	var l *Lease
	eventually(t, "a ready clone", func() bool {
		var err error
		l, err = p.AcquireReady(t.Context(), "app", leasemode.DB)
		if err != nil {
			t.Fatal(err)
		}
		return l != nil
	})
	defer l.Release(t.Context(), true)
	if got := query(t, connect(t, l), "SELECT name FROM users"); got != "seed" {
		t.Fatalf("the ready clone is not migrated: users has %q", got)
	}
	if !l.Current(t.Context()) {
		t.Fatal("a lease of the template just built is not current")
	}

	// While an Acquire waits, the clones made ready are the waiter's.
	gen := p.templates[""].cur.Load()
	eventually(t, "another ready clone", func() bool {
		return queryInt(t, f.catalogURL(), "SELECT count(*) FROM migrated_dbs WHERE template_db = $1 AND state = 'ready'", gen.datname) > 0
	})
	gen.waiters.Add(1)
	w, err := p.AcquireReady(t.Context(), "app", leasemode.DB)
	gen.waiters.Add(-1)
	if w != nil || err != nil {
		if w != nil {
			w.Release(t.Context(), true)
		}
		t.Fatalf("with an Acquire waiting: AcquireReady = %v, %v; want nothing", w, err)
	}

	m.write("003_more.up.sql", "CREATE TABLE more (id int);\n")
	if l.Current(t.Context()) {
		t.Fatal("a lease of the template before a migration edit is still current")
	}
	if l2, err := p.AcquireReady(t.Context(), "app", leasemode.DB); l2 != nil || err != nil {
		t.Fatalf("after an edit, before the new build: AcquireReady = %v, %v; want nothing", l2, err)
	}
	if n := c.builds.Load(); n != 1 {
		t.Fatalf("%d builds, want 1: AcquireReady must not build the edited template", n)
	}
}
