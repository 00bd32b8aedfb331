package pool

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pgtestproxy/pgtestproxy/internal/leasemode"
	"github.com/pgtestproxy/pgtestproxy/internal/testpg"
	"github.com/pgtestproxy/pgtestproxy/migrations"
)

// fullOnly hides a Migrator's prefixes, so the pool builds it from an empty database.
type fullOnly struct{ Migrator }

// BenchmarkIncrementalBuild builds the large fixture (150 tables in 15 golang-migrate
// files) from an empty database, then, on a catalog of its own, incrementally: the
// first build (through the prefix of 14 files), after adding a 16th migration and
// after editing it. It reports the median template build (create or clone + migrate +
// seal, the template's BuildTime; for the first incremental build only its last step,
// so compare its Acquire) and Acquire (builds, strategy measurement, first lease) of
// each, and the ratio of each incremental build to the full one:
//
//	go test -run '^$' -bench IncrementalBuild -benchtime 3x ./pool/
func BenchmarkIncrementalBuild(b *testing.B) {
	files := testpg.LargeSchema()
	build, acq := map[string][]time.Duration{}, map[string][]time.Duration{}
	step := func(name string, p *Pool) {
		began := time.Now()
		l := acquire(b, p, "", leasemode.DB)
		acq[name] = append(acq[name], time.Since(began))
		l.Release(b.Context(), false)
		stats, err := p.Stats(b.Context())
		if err != nil {
			b.Fatal(err)
		}
		build[name] = append(build[name], stats[0].BuildTime)
	}
	for b.Loop() {
		dir := b.TempDir()
		write := func(i int, sql string) {
			if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("%03d_m.up.sql", i)), []byte(sql), 0o644); err != nil {
				b.Fatal(err)
			}
		}
		for i, sql := range files {
			write(i+1, sql)
		}
		d, err := migrations.Open(dir)
		if err != nil {
			b.Fatal(err)
		}
		for _, incremental := range []bool{false, true} {
			f := newFixture(b)
			cfg := f.config(map[string]Migrator{"": fullOnly{d}})
			if incremental {
				cfg.Templates[""] = d
			}
			cfg.PoolSize = 1
			p := f.pool(cfg)
			if !incremental {
				step("full", p)
				p.Close()
				continue
			}
			step("first", p)
			write(16, extraMigration(false))
			step("add", p)
			write(16, extraMigration(true))
			step("edit", p)
			p.Close()
		}
	}
	full := median(build["full"])
	for _, name := range []string{"full", "first", "add", "edit"} {
		b.ReportMetric(msOf(median(build[name])), name+"-build-ms")
		b.ReportMetric(msOf(median(acq[name])), name+"-acquire-ms")
		if name != "full" {
			b.ReportMetric(float64(median(build[name]))/float64(full), name+"/full")
		}
	}
}

// extraMigration is a 16th migration for the large fixture: a column and an index on
// ten tables, and (edited) a second column.
func extraMigration(edited bool) string {
	var s strings.Builder
	for i := range 10 {
		fmt.Fprintf(&s, "ALTER TABLE t%03d ADD COLUMN extra int;\nCREATE INDEX t%03d_extra ON t%03d (extra);\n", i, i, i)
		if edited {
			fmt.Fprintf(&s, "ALTER TABLE t%03d ADD COLUMN extra2 text;\n", i)
		}
	}
	return s.String()
}
