package migrations

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgtestproxy/pgtestproxy/internal/testpg"
)

// layoutFiles writes the schema in layout f under dir.
func layoutFiles(b *testing.B, f Format, dir string, files []string) {
	for i, sql := range files {
		var name, body string
		switch f {
		case GolangMigrate:
			name, body = fmt.Sprintf("%03d_m.up.sql", i+1), sql
		case Goose:
			name, body = fmt.Sprintf("%05d_m.sql", i+1), "-- +goose Up\n"+sql+"-- +goose Down\nSELECT 1;\n"
		case Dbmate:
			name, body = fmt.Sprintf("2024010100%04d_m.sql", i+1), "-- migrate:up\n"+sql+"-- migrate:down\nSELECT 1;\n"
		case Flyway:
			name, body = fmt.Sprintf("V%d__m.sql", i+1), sql
		case Prisma:
			name, body = fmt.Sprintf("2024010100%04d_m/migration.sql", i+1), sql
		}
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			b.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkBuildLargeSchema builds the 150-table schema into a fresh database through
// every path, in turn each round, and applies it with psql -f directly as the
// yardstick; it reports each path's median and its ratio to psql's (database create
// and drop not timed):
//
//	go test -run '^$' -bench BuildLargeSchema -benchtime 5x ./migrations/
func BenchmarkBuildLargeSchema(b *testing.B) {
	files := testpg.LargeSchema()
	dir := b.TempDir()
	all := filepath.Join(dir, "all.sql")
	if err := os.WriteFile(all, []byte(strings.Join(files, "")), 0o644); err != nil {
		b.Fatal(err)
	}
	psql, err := exec.LookPath("psql")
	if err != nil {
		debian, _ := filepath.Glob("/usr/lib/postgresql/*/bin/psql")
		if len(debian) == 0 {
			b.Fatal("psql not found")
		}
		psql = debian[0]
	}
	steps := map[string]Step{}
	for _, f := range Formats {
		d := filepath.Join(dir, string(f))
		layoutFiles(b, f, d, files)
		s, err := OpenFormat(d, f)
		if err != nil {
			b.Fatal(err)
		}
		steps[string(f)] = s
	}
	cmd, err := NewCommand(CommandConfig{Command: psql + " -q -v ON_ERROR_STOP=1 -f " + all, Watch: []string{all}})
	if err != nil {
		b.Fatal(err)
	}
	steps["command"] = cmd
	dump := filepath.Join(dir, "dump.sql")
	{ // a pg_dump of the built schema, with its data
		url, name := benchDB(b)
		if out, err := exec.Command(psql, "-q", "-v", "ON_ERROR_STOP=1", "-f", all, url).CombinedOutput(); err != nil {
			b.Fatalf("psql: %v\n%s", err, out)
		}
		if out, err := exec.Command(pgDumpBin(b), "--no-owner", "-f", dump, "-d", url).CombinedOutput(); err != nil {
			b.Fatalf("pg_dump: %v\n%s", err, out)
		}
		dropBenchDB(b, name)
	}
	if steps["dump"], err = Open(dump); err != nil {
		b.Fatal(err)
	}
	names := []string{"golang-migrate", "goose", "dbmate", "flyway", "prisma", "dump", "command"}
	hashes := map[string]string{}
	for _, name := range names {
		if hashes[name], err = steps[name].Hash(context.Background(), 15, 1); err != nil {
			b.Fatal(err)
		}
	}
	took := map[string][]time.Duration{}
	timed := func(name string, apply func(url string) error) {
		url, db := benchDB(b)
		began := time.Now()
		if err := apply(url); err != nil {
			b.Fatalf("%s: %v", name, err)
		}
		took[name] = append(took[name], time.Since(began))
		dropBenchDB(b, db)
	}
	for b.Loop() { // every path once per round, so that load drift hits them alike
		timed("psql", func(url string) error {
			if out, err := exec.Command(psql, "-q", "-v", "ON_ERROR_STOP=1", "-f", all, url).CombinedOutput(); err != nil {
				return fmt.Errorf("%v\n%s", err, out)
			}
			return nil
		})
		for _, name := range names {
			timed(name, func(url string) error { return steps[name].Migrate(context.Background(), url, hashes[name]) })
		}
	}
	base := median(took["psql"])
	b.ReportMetric(float64(base.Milliseconds()), "psql-ms")
	for _, name := range names {
		m := median(took[name])
		b.ReportMetric(float64(m.Milliseconds()), name+"-ms")
		b.ReportMetric(float64(m)/float64(base), name+"/psql")
	}
}

func median(d []time.Duration) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[len(s)/2]
}

func benchDB(b *testing.B) (string, string) {
	name := testpg.UniqueName(b, "bench_")
	testpg.Exec(b, testpg.AdminURL(b), "CREATE DATABASE "+pgx.Identifier{name}.Sanitize())
	return testpg.URL(b, name), name
}

func dropBenchDB(b *testing.B, name string) {
	testpg.Exec(b, testpg.AdminURL(b), "DROP DATABASE "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)")
}

func pgDumpBin(b *testing.B) string {
	debian, _ := filepath.Glob("/usr/lib/postgresql/*/bin/pg_dump")
	if len(debian) > 0 {
		return debian[0]
	}
	p, err := exec.LookPath("pg_dump")
	if err != nil {
		b.Fatal("pg_dump not found")
	}
	return p
}

// BenchmarkHashUnchanged is the check every acquisition makes that the migrations did
// not change, on 10 and 200 files of golang-migrate's and Prisma's layouts:
//
//	go test -run '^$' -bench HashUnchanged ./migrations/
func BenchmarkHashUnchanged(b *testing.B) {
	for _, f := range []Format{GolangMigrate, Prisma} {
		for _, n := range []int{10, 200} {
			b.Run(fmt.Sprintf("%s/%d", f, n), func(b *testing.B) {
				dir := b.TempDir()
				layoutFiles(b, f, dir, oneTableEach(n))
				d, err := OpenFormat(dir, f)
				if err != nil {
					b.Fatal(err)
				}
				ctx := context.Background()
				first, err := d.Hash(ctx, 15, 1)
				if err != nil {
					b.Fatal(err)
				}
				b.ResetTimer()
				for b.Loop() {
					if h, err := d.Hash(ctx, 15, 1); err != nil || h != first {
						b.Fatalf("Hash = %q, %v; want %q", h, err, first)
					}
				}
			})
		}
	}
}

// oneTableEach returns n migrations that create a table each.
func oneTableEach(n int) []string {
	files := make([]string, n)
	for i := range files {
		files[i] = fmt.Sprintf("CREATE TABLE t%d (id int);\n", i)
	}
	return files
}

// BenchmarkCommandHashUnchanged is the same check for a --migrate-cmd watching a
// directory of 200 files:
//
//	go test -run '^$' -bench CommandHashUnchanged ./migrations/
func BenchmarkCommandHashUnchanged(b *testing.B) {
	dir := b.TempDir()
	layoutFiles(b, GolangMigrate, dir, oneTableEach(200))
	c, err := NewCommand(CommandConfig{Command: "true", Watch: []string{dir}})
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	first, err := c.Hash(ctx, 15, 1)
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if h, err := c.Hash(ctx, 15, 1); err != nil || h != first {
			b.Fatalf("Hash = %q, %v; want %q", h, err, first)
		}
	}
}
