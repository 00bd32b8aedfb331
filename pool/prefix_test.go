package pool

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pgtestproxy/pgtestproxy/internal/leasemode"
	"github.com/pgtestproxy/pgtestproxy/internal/testpg"
	"github.com/pgtestproxy/pgtestproxy/migrations"
)

// prefixLayout writes migrations of one ordered layout.
type prefixLayout struct {
	name  string
	file  func(i int) string      // name of migration i (1-based)
	body  func(sql string) string // a migration's contents around its up SQL
	extra map[string]string       // files after the versioned ones (Flyway repeatables)
	seed  string                  // a seed file's SQL ("" = none)
	tail  int                     // steps after the versioned migrations
}

var prefixLayouts = []prefixLayout{
	{name: "golang-migrate", file: func(i int) string { return fmt.Sprintf("%03d_m.up.sql", i) },
		body: func(sql string) string { return sql }},
	{name: "goose", file: func(i int) string { return fmt.Sprintf("%05d_m.sql", i) },
		body: func(sql string) string { return "-- +goose Up\n" + sql + "\n-- +goose Down\nSELECT 1;\n" }},
	{name: "dbmate", file: func(i int) string { return fmt.Sprintf("2024010100%04d_m.sql", i) },
		body: func(sql string) string { return "-- migrate:up\n" + sql + "\n-- migrate:down\nSELECT 1;\n" }},
	{name: "flyway", file: func(i int) string { return fmt.Sprintf("V%d__m.sql", i) },
		body:  func(sql string) string { return sql },
		extra: map[string]string{"R__views.sql": "CREATE VIEW every_t1 AS SELECT * FROM t1;"}, tail: 1},
	{name: "golang-migrate+seed", file: func(i int) string { return fmt.Sprintf("%03d_m.up.sql", i) },
		body: func(sql string) string { return sql }, seed: "INSERT INTO t1 VALUES (100, 'seeded');", tail: 1},
}

func prefixMigration(i int, edited bool) string {
	sql := fmt.Sprintf("CREATE TABLE t%d (id int PRIMARY KEY, v text);\nINSERT INTO t%d VALUES (%d, 'row');\n", i, i, i)
	if edited {
		sql += fmt.Sprintf("ALTER TABLE t%d ADD COLUMN edited bool DEFAULT true;\nCREATE INDEX t%d_v ON t%d (v);\n", i, i, i)
	}
	return sql
}

// TestIncrementalTemplates: for every ordered layout (with a Flyway repeatable and a
// seed file as tails), adding a migration and then editing the newest one builds the
// template from the template of the prefix before it, applying only what it lacks,
// and the result dumps (schema and data) exactly like the same migrations applied to
// an empty database. A second pool sharing the catalog builds nothing.
func TestIncrementalTemplates(t *testing.T) {
	t.Parallel()
	for _, lay := range prefixLayouts {
		t.Run(lay.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t)
			dir := t.TempDir()
			write := func(name, content string) {
				t.Helper()
				if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			for i := 1; i <= 3; i++ {
				write(lay.file(i), lay.body(prefixMigration(i, false)))
			}
			for name, sql := range lay.extra {
				write(name, sql)
			}
			open := func() Migrator {
				t.Helper()
				d, err := migrations.Open(dir)
				if err != nil {
					t.Fatal(err)
				}
				if lay.seed == "" {
					return d
				}
				seed := filepath.Join(t.TempDir(), "seed.sql")
				if err := os.WriteFile(seed, []byte(lay.seed), 0o644); err != nil {
					t.Fatal(err)
				}
				s, err := migrations.OpenSeed(seed)
				if err != nil {
					t.Fatal(err)
				}
				return migrations.NewSequence(d, s)
			}
			p := f.pool(f.config(map[string]Migrator{"": open()}))

			// The first build goes through the prefix before the newest migration.
			first := leaseStats(t, p)
			if first.BaseSteps != 2+lay.tail || first.Base == "" {
				t.Fatalf("first build: base %q with %d steps, want the prefix of %d", first.Base, first.BaseSteps, 2+lay.tail)
			}
			compareWithFull(t, p, dir, open)

			write(lay.file(4), lay.body(prefixMigration(4, false)))
			added := leaseStats(t, p)
			if lay.tail == 0 && added.Base != first.Database {
				t.Fatalf("after adding a migration: base %q, want the previous template %s", added.Base, first.Database)
			}
			if want := 3 + lay.tail; added.BaseSteps != want {
				t.Fatalf("after adding a migration: base %q with %d steps, want %d", added.Base, added.BaseSteps, want)
			}
			compareWithFull(t, p, dir, open)

			write(lay.file(4), lay.body(prefixMigration(4, true)))
			edited := leaseStats(t, p)
			if edited.Database == added.Database || edited.BaseSteps != added.BaseSteps {
				t.Fatalf("after editing the newest migration: %+v, want a new template built from %d steps", edited, added.BaseSteps)
			}
			if lay.tail == 0 && edited.Base != first.Database {
				t.Fatalf("after editing the newest migration: base %q, want %s (migrations 1..3)", edited.Base, first.Database)
			}
			compareWithFull(t, p, dir, open)

			templates := queryInt(t, f.catalogURL(), "SELECT count(*) FROM template_dbs")
			other := f.pool(f.config(map[string]Migrator{"": open()}))
			if s := leaseStats(t, other); s.Database != edited.Database || s.Base != edited.Base {
				t.Fatalf("second pool: %+v, want %s built from %s", s, edited.Database, edited.Base)
			}
			if n := queryInt(t, f.catalogURL(), "SELECT count(*) FROM template_dbs"); n != templates {
				t.Fatalf("the second pool built %d templates, want none", n-templates)
			}
		})
	}
}

// leaseStats leases a clone of the default template (so that it is built), releases
// it and returns the template's stats.
func leaseStats(t *testing.T, p *Pool) TemplateStats {
	t.Helper()
	l := acquire(t, p, "", leasemode.DB)
	l.Release(t.Context(), false)
	stats, err := p.Stats(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	return stats[0]
}

// compareWithFull dumps a clone of p's template and a database migrated from empty by
// a migrator opened afresh on the same files, and fails unless both dumps match.
func compareWithFull(t *testing.T, p *Pool, dir string, open func() Migrator) {
	t.Helper()
	l := acquire(t, p, "", leasemode.DB)
	defer l.Release(context.Background(), false)
	fullURL, _ := testpg.NewDatabase(t)
	m := open()
	hash, err := m.Hash(t.Context(), p.major, CatalogVersion)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Migrate(t.Context(), fullURL, hash); err != nil {
		t.Fatalf("full build of %s: %v", dir, err)
	}
	incremental := pgDump(t, testpg.URL(t, l.Database()))
	if full := pgDump(t, fullURL); incremental != full {
		t.Fatalf("the incremental template differs from a full build:\nincremental:\n%s\nfull:\n%s", incremental, full)
	}
	if !strings.Contains(incremental, "CREATE TABLE public.t3") {
		t.Fatalf("dump lacks the migrations' tables:\n%s", incremental)
	}
}

// pgDump returns the schema and the data of the database at url, without the
// per-run \restrict keys newer pg_dumps write.
func pgDump(t *testing.T, url string) string {
	t.Helper()
	bin, _ := filepath.Glob("/usr/lib/postgresql/*/bin/pg_dump")
	if len(bin) == 0 {
		bin = []string{testpg.Tool(t, "pg_dump", "apt-get install postgresql-client")}
	}
	var out strings.Builder
	for _, part := range []string{"--schema-only", "--data-only"} {
		b, err := exec.Command(bin[0], part, "--no-owner", "-d", url).CombinedOutput()
		if err != nil {
			t.Fatalf("pg_dump %s: %v\n%s", part, err, b)
		}
		for _, line := range strings.Split(string(b), "\n") {
			if !strings.HasPrefix(line, `\restrict`) && !strings.HasPrefix(line, `\unrestrict`) {
				out.WriteString(line + "\n")
			}
		}
	}
	return out.String()
}

// TestPrefixTemplatesBounded: every build after an added migration keeps a new prefix
// template (the base for editing it, before the seed file); GC keeps only the
// keptPrefixes most recently used of them, dropping the databases too, and the next
// build still starts from the newest.
func TestPrefixTemplatesBounded(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	dir := t.TempDir()
	lay := prefixLayouts[len(prefixLayouts)-1] // golang-migrate + seed
	write := func(i int) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(dir, lay.file(i)), []byte(prefixMigration(i, false)), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for i := 1; i <= 3; i++ {
		write(i)
	}
	d, err := migrations.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	seed := filepath.Join(t.TempDir(), "seed.sql")
	if err := os.WriteFile(seed, []byte(lay.seed), 0o644); err != nil {
		t.Fatal(err)
	}
	s, err := migrations.OpenSeed(seed)
	if err != nil {
		t.Fatal(err)
	}
	p := f.pool(f.config(map[string]Migrator{"": migrations.NewSequence(d, s)}))
	leaseStats(t, p)
	for i := 4; i <= 8; i++ {
		write(i)
		leaseStats(t, p)
	}
	prefixes := `SELECT count(*) FROM template_dbs WHERE prefix`
	if n := queryInt(t, f.catalogURL(), prefixes); n != 7 { // migrations 1..2, 1..3, …, 1..8
		t.Fatalf("%d prefix templates before GC, want 7", n)
	}
	r, err := p.GC(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if n := queryInt(t, f.catalogURL(), prefixes); n != keptPrefixes || len(r.Templates) != 7-keptPrefixes {
		t.Fatalf("after GC: %d prefix templates (GC dropped %v), want %d", n, r.Templates, keptPrefixes)
	}
	for _, db := range r.Templates {
		if dbExists(t, db) {
			t.Errorf("GC reported %s dropped, but it exists", db)
		}
	}
	write(9)
	if st := leaseStats(t, p); st.BaseSteps != 9 {
		t.Fatalf("after GC and another migration: built from %d steps (%s), want the prefix of 9", st.BaseSteps, st.Base)
	}
}

// TestCatalogGainsBaseColumns: a catalog of this version made before incremental builds
// (template_dbs without base, base_steps and prefix) gains them when a pool starts on
// it, and builds incrementally.
func TestCatalogGainsBaseColumns(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	m := newMigDir(t, map[string]string{"001_a.up.sql": "CREATE TABLE a (id int);", "002_b.up.sql": "CREATE TABLE b (id int);"})
	f.pool(f.config(map[string]Migrator{"": m.Dir})).Close()
	testpg.Exec(t, f.catalogURL(), "ALTER TABLE template_dbs DROP COLUMN base, DROP COLUMN base_steps, DROP COLUMN prefix")
	p := f.pool(f.config(map[string]Migrator{"": m.Dir}))
	if st := leaseStats(t, p); st.BaseSteps != 1 || st.Base == "" {
		t.Fatalf("stats %+v, want a template built from the prefix of 1 migration", st)
	}
}

// TestIncrementalBuildsOnceAcrossPools: pools sharing a catalog, each with a Dir of its
// own over the same files (as separate processes have), build the prefix template and
// the template once between them, and every lease gets the template.
func TestIncrementalBuildsOnceAcrossPools(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	files := map[string]string{}
	for i := 1; i <= 3; i++ {
		files[fmt.Sprintf("%03d_m.up.sql", i)] = prefixMigration(i, false)
	}
	dir := newMigDir(t, files).dir
	const pools = 3
	var ps []*Pool
	for range pools {
		d, err := migrations.Open(dir)
		if err != nil {
			t.Fatal(err)
		}
		ps = append(ps, f.pool(f.config(map[string]Migrator{"": d})))
	}
	leases := acquireRacing(t, ps, 2*pools, false)
	for i := range leases {
		if leases[i].gen.datname != leases[0].gen.datname {
			t.Fatalf("leases of %s and %s", leases[i].gen.datname, leases[0].gen.datname)
		}
	}
	if n := queryInt(t, f.catalogURL(), "SELECT count(*) FROM template_dbs"); n != 2 {
		t.Fatalf("%d templates, want 2: migrations 1..2 and 1..3", n)
	}
	if n := queryInt(t, f.catalogURL(), "SELECT count(*) FROM template_dbs WHERE base <> '' AND base_steps = 2 AND NOT prefix"); n != 1 {
		t.Fatal("the template was not built from the prefix of 2 migrations")
	}
}
