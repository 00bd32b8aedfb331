package pool

import (
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/pgtestproxy/pgtestproxy/internal/leasemode"
	"github.com/pgtestproxy/pgtestproxy/internal/testpg"
)

// TestCatalogVersionsCoexist: pools of two catalog versions share one upstream and one
// catalog database, each with a live lease, next to a version 1 catalog (public schema)
// listing a database of its own. Start-up and GC of either drop nothing of the
// other's, nor of version 1's, and both keep serving.
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
	legacy := f.prefix + "legacy_v1_clone"
	execAdmin(t, f.admin, "CREATE DATABASE "+ident(legacy))
	execAdmin(t, testpg.URL(t, f.catalog), `CREATE TABLE public.schema_version (version int NOT NULL);
		INSERT INTO public.schema_version VALUES (1);
		CREATE TABLE public.migrated_dbs (datname text PRIMARY KEY, state text NOT NULL, owner bigint NOT NULL);
		INSERT INTO public.migrated_dbs VALUES ('`+legacy+`', 'leased', 7)`)

	// A restart of each version (start-up GC on) and an explicit GC by each. The older
	// says it sees a newer catalog it leaves alone.
	for _, v := range []int{CatalogVersion, CatalogVersion + 1} {
		cfg := config(v)
		core, logs := observer.New(zap.InfoLevel)
		cfg.Logger = zap.New(core)
		p := f.pool(cfg)
		if v == CatalogVersion && logs.FilterMessageSnippet("a newer pgtestproxy shares this upstream").Len() != 1 {
			t.Errorf("the older version did not say it sees a newer catalog: %v", logs.All())
		}
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
	if !dbExists(t, legacy) || queryInt(t, testpg.URL(t, f.catalog), "SELECT version FROM public.schema_version") != 1 {
		t.Fatal("the version 1 catalog or its database was touched")
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
