package pool

import (
	"testing"
	"time"

	"github.com/pgtestproxy/pgtestproxy/internal/leasemode"
)

type warmed struct {
	template string
	took     time.Duration
	err      error
}

// warm runs p.Warm and returns what it reported, by template, once every template has.
func warm(t *testing.T, p *Pool) map[string]warmed {
	t.Helper()
	ch := make(chan warmed, len(p.names))
	p.Warm(func(template string, took time.Duration, err error) { ch <- warmed{template, took, err} })
	got := map[string]warmed{}
	for range p.names {
		select {
		case w := <-ch:
			got[w.template] = w
		case <-t.Context().Done():
			t.Fatal("Warm never reported")
		}
	}
	return got
}

// Warm builds every template before any Acquire: the template is sealed and its pool
// filling when Warm reports, and the first Acquire does not build again. A template
// whose migration fails is reported, and its first Acquire still gets the migration's
// error.
func TestWarmBuildsBeforeFirstAcquire(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	good := &counting{Migrator: newMigDir(t, simpleSchema)}
	bad := newMigDir(t, map[string]string{"001_broken.up.sql": "INSERT INTO missing_table VALUES (1);\n"})
	p := f.pool(f.config(map[string]Migrator{"app": good, "bad": bad}))
	got := warm(t, p)
	if got["app"].err != nil || sqlStateOf(got["bad"].err) != "42P01" {
		t.Fatalf("Warm reported %+v", got)
	}
	hash, err := good.Hash(t.Context(), p.major, CatalogVersion)
	if err != nil {
		t.Fatal(err)
	}
	name := p.templateName(hash)
	if n := queryInt(t, f.admin, "SELECT count(*) FROM pg_database WHERE datname = $1 AND datistemplate", name); n != 1 {
		t.Fatalf("template %s not sealed when Warm reported it built", name)
	}
	eventually(t, "warm pool filled", func() bool {
		return queryInt(t, f.catalogURL(), "SELECT count(*) FROM migrated_dbs WHERE template_db = $1 AND state = 'ready'", name) == 2
	})
	began := time.Now()
	l := acquire(t, p, "app", leasemode.DB)
	t.Logf("first Acquire after Warm: %v (build took %v)", time.Since(began), got["app"].took)
	defer l.Release(t.Context(), true)
	if n := good.builds.Load(); n != 1 {
		t.Fatalf("template built %d times, want once (by Warm)", n)
	}
	if _, err := p.Acquire(t.Context(), "bad", leasemode.DB); sqlStateOf(err) != "42P01" {
		t.Fatalf("Acquire of the broken template: %v, want its migration error 42P01", err)
	}
}

// Without Warm the first Acquire pays for the build: logged for comparison with the
// test above (the figure is in the README; no timed assertion).
func TestFirstAcquireWithoutWarm(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	good := &counting{Migrator: newMigDir(t, simpleSchema)}
	p := f.pool(f.config(map[string]Migrator{"app": good}))
	began := time.Now()
	l := acquire(t, p, "app", leasemode.DB)
	t.Logf("first Acquire without Warm: %v", time.Since(began))
	l.Release(t.Context(), true)
	if n := good.builds.Load(); n != 1 {
		t.Fatalf("template built %d times, want once", n)
	}
}

// Prepare builds the template a database name selects, once.
func TestPrepare(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	good := &counting{Migrator: newMigDir(t, simpleSchema)}
	p := f.pool(f.config(map[string]Migrator{"": good}))
	for range 2 {
		if err := p.Prepare(t.Context(), "anything"); err != nil {
			t.Fatal(err)
		}
	}
	if n := good.builds.Load(); n != 1 {
		t.Fatalf("built %d times, want once", n)
	}
	l := acquire(t, p, "other", leasemode.DB)
	l.Release(t.Context(), true)
	if n := good.builds.Load(); n != 1 {
		t.Fatalf("Acquire after Prepare built again (%d builds)", n)
	}
}
