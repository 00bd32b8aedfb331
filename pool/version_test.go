package pool

import (
	"testing"

	"github.com/pgtestproxy/pgtestproxy/internal/leasemode"
)

// TestCatalogVersionsCoexist: pools of two catalog versions share one upstream and one
// catalog database, each with a live lease. Start-up and GC of either drop nothing of
// the other's, and both keep serving.
func TestCatalogVersionsCoexist(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	d := newMigDir(t, simpleSchema)
	config := func(version int) Config {
		cfg := f.config(map[string]Migrator{"": d})
		cfg.catalogVersion = version
		return cfg
	}
	older := f.pool(config(CatalogVersion))
	lo := acquire(t, older, "", leasemode.DB)
	defer lo.Release(t.Context(), true)
	newer := f.pool(config(CatalogVersion + 1))
	ln := acquire(t, newer, "", leasemode.DB)
	defer ln.Release(t.Context(), true)

	// A restart of each version (start-up GC on) and an explicit GC by each.
	for _, v := range []int{CatalogVersion, CatalogVersion + 1} {
		p := f.pool(config(v))
		if _, err := p.GC(t.Context()); err != nil {
			t.Fatalf("GC of catalog version %d: %v", v, err)
		}
		p.Close()
	}
	for _, p := range []*Pool{older, newer} {
		r, err := p.GC(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		if len(r.Reclaimed)+len(r.Templates) != 0 {
			t.Fatalf("GC of catalog version %d dropped %+v", p.cfg.catalogVersion, r)
		}
	}
	for _, l := range []*Lease{lo, ln} {
		if got := query(t, connect(t, l), "SELECT count(*) FROM users"); got != "1" {
			t.Fatalf("clone %s: %q users", l.Database(), got)
		}
	}
	for _, p := range []*Pool{older, newer} {
		for _, g := range p.active() {
			if !dbExists(t, g.datname) {
				t.Fatalf("template %s of catalog version %d was dropped", g.datname, p.cfg.catalogVersion)
			}
		}
		acquire(t, p, "", leasemode.DB).Release(t.Context(), true)
	}
}
