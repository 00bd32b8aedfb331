package pool

import (
	"context"
	"testing"
	"time"

	"github.com/pgtestproxy/pgtestproxy/internal/leasemode"
)

// BenchmarkAcquireParked compares, in one run, a tx-mode Acquire + Release of a clone
// parked with a kept backend (no catalog round trip) with the same on a template whose
// leases keep nothing (the catalog's claim and the release's UPDATE). Each iteration
// does one of each; it reports both medians and parked/catalog.
func BenchmarkAcquireParked(b *testing.B) {
	f := newFixture(b)
	cfg := f.config(map[string]Migrator{"parked": newMigDir(b, benchSchema()), "catalog": newMigDir(b, simpleSchema)})
	p := f.pool(cfg)
	ctx := context.Background()
	once := func(tpl string, keep bool) time.Duration {
		t0 := time.Now()
		l, err := p.Acquire(ctx, tpl, leasemode.Tx)
		if err != nil {
			b.Fatal(err)
		}
		if keep {
			l.Keep(&closer{})
		}
		l.Release(ctx, true)
		return time.Since(t0)
	}
	once("parked", true)
	once("catalog", false)
	var parked, catalog []time.Duration
	for b.Loop() {
		parked = append(parked, once("parked", true))
		catalog = append(catalog, once("catalog", false))
	}
	pm, cm := median(parked), median(catalog)
	b.ReportMetric(msOf(pm), "parked-p50-ms")
	b.ReportMetric(msOf(cm), "catalog-p50-ms")
	b.ReportMetric(float64(pm)/float64(cm), "parked/catalog")
}
