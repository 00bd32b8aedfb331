package pool

import (
	"context"
	"errors"
	"fmt"
	"github.com/pgtestproxy/pgtestproxy/internal/leasemode"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
)

func TestAcquireGivesMigratedPrivateClones(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	p := f.pool(f.config(map[string]Migrator{"": newMigDir(t, simpleSchema)}))
	a := acquire(t, p, "anything", leasemode.DB)
	b := acquire(t, p, "something_else", leasemode.DB)
	if a.Database() == b.Database() {
		t.Fatal("two leases share a clone")
	}
	if !strings.HasPrefix(a.Database(), f.prefix) || a.Template() != "" {
		t.Fatalf("lease %s of template %q", a.Database(), a.Template())
	}
	ca, cb := connect(t, a), connect(t, b)
	if got := query(t, ca, "SELECT name FROM users"); got != "seed" {
		t.Fatalf("clone is not migrated: users has %q", got)
	}
	query(t, ca, "INSERT INTO users (name) VALUES ('only in a')")
	if got := query(t, cb, "SELECT count(*) FROM users"); got != "1" {
		t.Fatalf("clone b sees %s users, want 1", got)
	}
	if cfg := a.ConnConfig(); cfg.Database != a.Database() || cfg == a.ConnConfig() {
		t.Fatal("ConnConfig is not a fresh copy pointing at the clone")
	}
	ca.Close(t.Context())
	a.Release(t.Context(), true)
	a.Release(t.Context(), true) // idempotent
	eventually(t, "released db-mode clone dropped", func() bool { return !dbExists(t, a.Database()) })
	// b still has a backend connected: the drop must force it out.
	b.Release(t.Context(), true)
	eventually(t, "clone with a live connection dropped", func() bool { return !dbExists(t, b.Database()) })
	if n := queryInt(t, f.catalogURL(), "SELECT count(*) FROM migrated_dbs WHERE datname IN ($1, $2)", a.Database(), b.Database()); n != 0 {
		t.Fatalf("%d released clones still in the catalog", n)
	}
}

func TestTemplateSealedAndStrategyMeasured(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	p := f.pool(f.config(map[string]Migrator{"app": newMigDir(t, simpleSchema)}))
	l := acquire(t, p, "app", leasemode.DB)
	defer l.Release(t.Context(), true)
	stats, err := p.Stats(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if len(stats) != 1 || stats[0].Name != "app" || stats[0].Hash == "" || stats[0].BuildTime <= 0 {
		t.Fatalf("stats = %+v", stats)
	}
	s := stats[0]
	if n := queryInt(t, f.admin, "SELECT count(*) FROM pg_database WHERE datname = $1 AND datistemplate AND NOT datallowconn", s.Database); n != 1 {
		t.Fatalf("template %s is not sealed", s.Database)
	}
	if p.major >= 15 {
		if s.WALLog <= 0 || s.FileCopy <= 0 || (s.Strategy != "WAL_LOG" && s.Strategy != "FILE_COPY") {
			t.Fatalf("strategy not measured: %+v", s)
		}
		want := "WAL_LOG"
		if s.FileCopy < s.WALLog {
			want = "FILE_COPY"
		}
		if s.Strategy != want {
			t.Fatalf("chose %s with WAL_LOG %v and FILE_COPY %v", s.Strategy, s.WALLog, s.FileCopy)
		}
		t.Logf("clone strategies: WAL_LOG %v, FILE_COPY %v → %s", s.WALLog, s.FileCopy, s.Strategy)
	}
}

// TestCloneStrategyForced: with CloneStrategy set, no strategy is measured and every
// clone, of a template this pool built or another one did, is made with it.
func TestCloneStrategyForced(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	cfg := f.config(map[string]Migrator{"app": newMigDir(t, simpleSchema)})
	cfg.CloneStrategy = "FILE_COPY"
	cfg.PoolSize = 1
	p := f.pool(cfg)
	l := acquire(t, p, "app", leasemode.DB)
	stats, err := p.Stats(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if len(stats) != 1 || stats[0].Strategy != "FILE_COPY" || stats[0].WALLog != 0 || stats[0].FileCopy != 0 {
		t.Fatalf("stats = %+v, want strategy FILE_COPY and nothing measured", stats)
	}
	if n := queryInt(t, f.catalogURL(), "SELECT count(*) FROM migrated_dbs WHERE datname = $1 AND strategy = 'FILE_COPY'", l.Database()); n != 1 {
		t.Errorf("clone %s not made with FILE_COPY", l.Database())
	}
	l.Release(t.Context(), false)
	p.Close()
	// A second pool, on the template the first built, makes its clones with its own:
	// it keeps more ready than the first left.
	cfg2 := f.config(map[string]Migrator{"app": newMigDir(t, simpleSchema)})
	cfg2.CloneStrategy = "WAL_LOG"
	cfg2.PoolSize = 3
	g := f.pool(cfg2)
	acquire(t, g, "app", leasemode.DB).Release(t.Context(), false)
	eventually(t, "a clone made with WAL_LOG", func() bool {
		return queryInt(t, f.catalogURL(), "SELECT count(*) FROM migrated_dbs WHERE strategy = 'WAL_LOG'") > 0
	})
}

func TestUnknownTemplate(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	d := newMigDir(t, simpleSchema)
	p := f.pool(f.config(map[string]Migrator{"billing": d, "auth": d}))
	_, err := p.Acquire(t.Context(), "nope", leasemode.DB)
	if sqlStateOf(err) != "3D000" {
		t.Fatalf("err = %v, want SQLSTATE 3D000", err)
	}
	mustContain(t, err.Error(), `"nope"`, `"auth"`, `"billing"`)
	if _, err := p.Acquire(t.Context(), "billing", "bogus"); sqlStateOf(err) != "22023" {
		t.Fatalf("bad mode: err = %v, want SQLSTATE 22023", err)
	}
}

func TestUpstreamUnreachable(t *testing.T) {
	t.Parallel()
	cfg := Config{
		ConnString: "postgres://someone:sekret-pw@127.0.0.1:1/postgres?connect_timeout=5",
		Templates:  map[string]Migrator{"": newMigDir(t, simpleSchema)},
	}
	_, err := New(t.Context(), cfg)
	if sqlStateOf(err) != "08006" {
		t.Fatalf("err = %v, want SQLSTATE 08006", err)
	}
	mustContain(t, err.Error(), "127.0.0.1:1")
	if strings.Contains(err.Error(), "sekret-pw") {
		t.Fatalf("error leaks the password: %v", err)
	}
}

func TestConfigValidate(t *testing.T) {
	t.Parallel()
	m := map[string]Migrator{"": newMigDir(t, simpleSchema)}
	for _, tt := range []struct {
		name string
		cfg  Config
		ok   bool
	}{
		{"defaults", Config{Templates: m}, true},
		{"no templates", Config{}, false},
		{"nil migrator", Config{Templates: map[string]Migrator{"x": nil}}, false},
		{"bad prefix", Config{Templates: m, Prefix: "Bad-Prefix"}, false},
		{"long prefix", Config{Templates: m, Prefix: strings.Repeat("p", 33)}, false},
		{"negative pool", Config{Templates: m, PoolSize: -1}, false},
		{"negative wait", Config{Templates: m, AcquireTimeout: -time.Second}, false},
	} {
		if err := tt.cfg.Validate(); (err == nil) != tt.ok {
			t.Errorf("%s: Validate() = %v", tt.name, err)
		}
	}
}

// TestMigrationChangesMakeNewTemplates edits, adds and renames migrations under a
// running pool: each gives a new template on the next Acquire, no restart.
func TestMigrationChangesMakeNewTemplates(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	d := newMigDir(t, map[string]string{"001_t.up.sql": "CREATE TABLE t (a int);"})
	p := f.pool(f.config(map[string]Migrator{"": d}))
	seen := map[string]bool{}
	check := func(step, wantCols string) {
		t.Helper()
		l := acquire(t, p, "", leasemode.DB)
		defer l.Release(t.Context(), true)
		if got := columns(t, l, "t"); got != wantCols {
			t.Fatalf("%s: table t has columns %q, want %q", step, got, wantCols)
		}
		s, err := p.Stats(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		if seen[s[0].Database] {
			t.Fatalf("%s: template %s reused", step, s[0].Database)
		}
		seen[s[0].Database] = true
	}
	check("initial", "a")
	d.write("001_t.up.sql", "CREATE TABLE t (a int, b int);")
	check("edited", "a,b")
	d.write("002_more.up.sql", "ALTER TABLE t ADD COLUMN c int;")
	check("added", "a,b,c")
	if err := os.Rename(filepath.Join(d.dir, "002_more.up.sql"), filepath.Join(d.dir, "002_renamed.up.sql")); err != nil {
		t.Fatal(err)
	}
	check("renamed", "a,b,c")
	// Replaced templates' ready clones are retired.
	eventually(t, "old templates' ready clones retired", func() bool {
		return queryInt(t, f.catalogURL(), `SELECT count(*) FROM migrated_dbs m JOIN template_dbs t ON t.datname = m.template_db
			WHERE m.state = 'ready' AND t.datname <> $1`, p.templates[""].cur.Load().datname) == 0
	})
}

// TestBrokenMigration: the error names the file and line with the upstream's SQLSTATE,
// reaches every waiter, leaves no sealed template, and fixing the file works.
func TestBrokenMigration(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	d := newMigDir(t, map[string]string{
		"001_ok.up.sql":     "CREATE TABLE ok (id int);\n",
		"002_broken.up.sql": "CREATE TABLE fine (id int);\n\nINSERT INTO missing_table VALUES (1);\n",
	})
	p := f.pool(f.config(map[string]Migrator{"": d}))
	const waiters = 3
	errs := make([]error, waiters)
	var wg sync.WaitGroup
	for i := range waiters {
		wg.Go(func() { _, errs[i] = p.Acquire(t.Context(), "", leasemode.DB) })
	}
	wg.Wait()
	for _, err := range errs {
		if sqlStateOf(err) != "42P01" {
			t.Fatalf("err = %v, want SQLSTATE 42P01", err)
		}
		mustContain(t, err.Error(), "002_broken.up.sql line 3", `relation "missing_table" does not exist`)
	}
	hash, err := d.Hash(t.Context(), p.major, CatalogVersion)
	if err != nil {
		t.Fatal(err)
	}
	name := p.templateName(hash)
	if n := queryInt(t, f.admin, "SELECT count(*) FROM pg_database WHERE datname = $1 AND datistemplate", name); n != 0 {
		t.Fatal("a failed template was sealed")
	}
	if n := queryInt(t, f.catalogURL(), "SELECT count(*) FROM template_dbs WHERE datname = $1 AND state = 'ready'", name); n != 0 {
		t.Fatal("a failed template is recorded ready")
	}
	// Retried on the next request.
	if _, err := p.Acquire(t.Context(), "", leasemode.DB); sqlStateOf(err) != "42P01" {
		t.Fatalf("retry: err = %v", err)
	}
	d.write("002_broken.up.sql", "CREATE TABLE fine (id int);\n\nCREATE TABLE missing_table (id int);\n")
	l := acquire(t, p, "", leasemode.DB)
	defer l.Release(t.Context(), true)
	if got := columns(t, l, "missing_table"); got != "id" {
		t.Fatalf("fixed migration not applied: %q", got)
	}
}

// TestHalfBuiltTemplateRebuilt: a template a crashed builder left half-built is dropped
// and built again.
func TestHalfBuiltTemplateRebuilt(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	d := newMigDir(t, simpleSchema)
	p := f.pool(f.config(map[string]Migrator{"": d}))
	hash, err := d.Hash(t.Context(), p.major, CatalogVersion)
	if err != nil {
		t.Fatal(err)
	}
	name := p.templateName(hash)
	_, err = p.cat.Exec(t.Context(), `INSERT INTO template_dbs (datname, hash, template, state, builder)
		VALUES ($1, $2, '', 'building', 12345)`, name, hash)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.admin.Exec(t.Context(), "CREATE DATABASE "+ident(name)); err != nil {
		t.Fatal(err)
	}
	if _, err := p.admin.Exec(t.Context(), "ALTER DATABASE "+ident(name)+" IS_TEMPLATE true"); err != nil {
		t.Fatal(err)
	}
	l := acquire(t, p, "", leasemode.DB)
	defer l.Release(t.Context(), true)
	if got := columns(t, l, "users"); got != "id,name" {
		t.Fatalf("clone of the rebuilt template has users(%s)", got)
	}
}

// TestBuildOnceAcrossPools races several pools on one catalog: exactly one builds.
func TestBuildOnceAcrossPools(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	m := &counting{Migrator: newMigDir(t, map[string]string{
		"001_slow.up.sql": "SELECT pg_sleep(0.3);\nCREATE TABLE built (id int);\n",
	})}
	const pools = 3
	var ps []*Pool
	for range pools {
		ps = append(ps, f.pool(f.config(map[string]Migrator{"": m})))
	}
	acquireRacing(t, ps, 2*pools, true)
	if n := m.builds.Load(); n != 1 {
		t.Fatalf("%d builds, want 1", n)
	}
}

// TestClaimsNeverCollide hammers two pools on one catalog with concurrent tx-mode
// acquires: no clone is ever held by two leases at once.
func TestClaimsNeverCollide(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	m := newMigDir(t, simpleSchema)
	cfg := f.config(map[string]Migrator{"": m})
	cfg.PoolSize = 4
	a, b := f.pool(cfg), f.pool(cfg)
	var mu sync.Mutex
	held := map[string]bool{}
	var wg sync.WaitGroup
	errc := make(chan error, 16)
	for w := range 8 {
		p := a
		if w%2 == 1 {
			p = b
		}
		wg.Go(func() {
			for range 10 {
				l, err := p.Acquire(t.Context(), "", leasemode.Tx)
				if err != nil {
					errc <- err
					return
				}
				mu.Lock()
				dup := held[l.Database()]
				held[l.Database()] = true
				mu.Unlock()
				if dup {
					errc <- fmt.Errorf("clone %s leased twice at once", l.Database())
				}
				time.Sleep(time.Millisecond)
				mu.Lock()
				delete(held, l.Database())
				mu.Unlock()
				l.Release(t.Context(), true)
			}
		})
	}
	wg.Wait()
	close(errc)
	for err := range errc {
		t.Fatal(err)
	}
}

// TestRefillAfterBurst: a burst larger than the pool is served, and the pool refills to
// PoolSize afterwards.
func TestRefillAfterBurst(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	cfg := f.config(map[string]Migrator{"": newMigDir(t, simpleSchema)})
	cfg.PoolSize = 3
	p := f.pool(cfg)
	acquire(t, p, "", leasemode.DB).Release(t.Context(), true) // build
	const burst = 8
	leases := make([]*Lease, burst)
	errs := make([]error, burst)
	var wg sync.WaitGroup
	for i := range burst {
		wg.Go(func() { leases[i], errs[i] = p.Acquire(t.Context(), "", leasemode.DB) })
	}
	wg.Wait()
	names := map[string]bool{}
	for i, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
		names[leases[i].Database()] = true
	}
	if len(names) != burst {
		t.Fatalf("%d distinct clones for %d leases", len(names), burst)
	}
	for _, l := range leases {
		l.Release(t.Context(), true)
	}
	eventually(t, "pool refilled to PoolSize", func() bool {
		s, err := p.Stats(t.Context())
		return err == nil && s[0].Ready == cfg.PoolSize && s[0].Creating == 0 && s[0].Leased == 0
	})
	eventually(t, "released clones dropped", func() bool {
		return queryInt(t, f.catalogURL(), "SELECT count(*) FROM migrated_dbs") == cfg.PoolSize
	})
}

// TestCapHolds: MaxClones bounds the clones across templates; a template that cannot
// get one fails with 53300 naming it and the wait, and succeeds once room is made.
func TestCapHolds(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	cfg := f.config(map[string]Migrator{
		"a": newMigDir(t, map[string]string{"001_a.up.sql": "CREATE TABLE a (id int);"}),
		"b": newMigDir(t, map[string]string{"001_b.up.sql": "CREATE TABLE b (id int);"}),
	})
	cfg.MaxClones, cfg.PoolSize, cfg.AcquireTimeout = 3, 2, 500*time.Millisecond
	p := f.pool(cfg)
	clones := func() int {
		return queryInt(t, f.admin, "SELECT count(*) FROM pg_database WHERE starts_with(datname, $1) AND NOT datistemplate", f.prefix)
	}
	var held []*Lease
	for range 3 {
		held = append(held, acquire(t, p, "a", leasemode.DB))
	}
	_, err := p.Acquire(t.Context(), "a", leasemode.DB)
	if sqlStateOf(err) != "53300" {
		t.Fatalf("4th lease: err = %v, want SQLSTATE 53300", err)
	}
	_, err = p.Acquire(t.Context(), "b", leasemode.DB)
	if sqlStateOf(err) != "53300" {
		t.Fatalf("other template at the cap: err = %v, want SQLSTATE 53300", err)
	}
	mustContain(t, err.Error(), `template "b"`, "within 500ms")
	if n := clones(); n > cfg.MaxClones {
		t.Fatalf("%d clones exist, cap is %d", n, cfg.MaxClones)
	}
	held[0].Release(t.Context(), true)
	var lb *Lease
	eventually(t, "a clone of b once a's lease is released", func() bool {
		lb, err = p.Acquire(t.Context(), "b", leasemode.DB)
		if err != nil && sqlStateOf(err) != "53300" {
			t.Fatal(err)
		}
		return err == nil
	})
	if got := columns(t, lb, "b"); got != "id" {
		t.Fatalf("b's clone has b(%s)", got)
	}
	if n := clones(); n > cfg.MaxClones {
		t.Fatalf("%d clones exist, cap is %d", n, cfg.MaxClones)
	}
	for _, l := range append(held[1:], lb) {
		l.Release(t.Context(), true)
	}
}

// TestTxKeepKept: a clean tx-mode clone comes back with what the lease kept in it; an
// unclean one closes the kept resource; db-mode leases leave such a clone alone.
func TestTxKeepKept(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	cfg := f.config(map[string]Migrator{"": newMigDir(t, simpleSchema)})
	cfg.PoolSize = 1
	p := f.pool(cfg)

	first := acquire(t, p, "", leasemode.Tx)
	if first.Kept() != nil {
		t.Fatal("a fresh clone has a kept resource")
	}
	kept := &closer{}
	first.Keep(kept)
	first.Release(t.Context(), true)

	second := acquire(t, p, "", leasemode.Tx)
	if second.Database() != first.Database() {
		t.Fatalf("tx lease got %s, want the clone with a kept connection %s", second.Database(), first.Database())
	}
	if got := second.Kept(); got != kept {
		t.Fatalf("Kept() = %v, want the resource kept by the previous lease", got)
	}
	if second.Kept() != nil {
		t.Fatal("Kept() handed out the resource twice")
	}
	second.Keep(kept) // the caller hands it back
	second.Release(t.Context(), true)
	if kept.times() != 0 {
		t.Fatal("kept resource closed while it was still kept")
	}

	// Unclean: retired, and what it kept is closed.
	third := acquire(t, p, "", leasemode.Tx)
	if third.Kept() != kept {
		t.Fatal("third lease did not get the kept resource")
	}
	third.Keep(kept)
	third.Release(t.Context(), false)
	if kept.times() != 1 {
		t.Fatalf("kept resource closed %d times after an unclean release, want 1", kept.times())
	}
	eventually(t, "unclean clone dropped", func() bool { return !dbExists(t, third.Database()) })

	// A db-mode lease never takes a clone holding a backend kept for tx mode (issue 11
	// item 5): it gets a fresh clone, and the next tx lease still finds its backend.
	tx := acquire(t, p, "", leasemode.Tx)
	kept2 := &closer{}
	tx.Keep(kept2)
	tx.Release(t.Context(), true)
	for range 3 {
		db := acquire(t, p, "", leasemode.DB)
		if db.Database() == tx.Database() || db.Kept() != nil {
			t.Fatalf("db-mode lease took %s, the clone holding a kept backend", db.Database())
		}
		db.Release(t.Context(), true)
	}
	if kept2.times() != 0 {
		t.Fatal("the kept resource was closed while db-mode leases came and went")
	}
	again := acquire(t, p, "", leasemode.Tx)
	defer again.Release(context.Background(), false)
	if again.Database() != tx.Database() || again.Kept() != kept2 {
		t.Fatalf("tx lease got %s, want %s with its kept resource", again.Database(), tx.Database())
	}
}

// TestGCLeavesLookalikes: GC drops stale templates and idle clones of the catalog, and
// never a database outside it, even one with the prefix.
func TestGCLeavesLookalikes(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	d := newMigDir(t, simpleSchema)
	old := f.pool(f.config(map[string]Migrator{"": d}))
	acquire(t, old, "", leasemode.DB).Release(t.Context(), true)
	tpl := old.templates[""].cur.Load().datname
	old.Close()
	decoy, app := f.prefix+"decoy", "app_"+f.prefix
	for _, n := range []string{decoy, app} {
		execAdmin(t, f.admin, "CREATE DATABASE "+ident(n))
	}
	t.Cleanup(func() { execAdmin(t, f.admin, "DROP DATABASE IF EXISTS "+ident(app)+" WITH (FORCE)") })

	cfg := f.config(map[string]Migrator{"": d})
	cfg.TTL, cfg.NoStartupGC = time.Millisecond, true
	p := f.pool(cfg)
	templates := queryInt(t, f.catalogURL(), "SELECT count(*) FROM template_dbs") // tpl and the prefix it was built from
	r, err := p.GC(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Templates) != templates || !slices.Contains(r.Templates, tpl) || len(r.Clones) == 0 {
		t.Fatalf("GC report %+v, want the %d templates, among them %s, and its idle clones", r, templates, tpl)
	}
	if dbExists(t, tpl) {
		t.Fatal("stale template survived GC")
	}
	if n := queryInt(t, f.catalogURL(), "SELECT count(*) FROM migrated_dbs") + queryInt(t, f.catalogURL(), "SELECT count(*) FROM template_dbs"); n != 0 {
		t.Fatalf("%d catalog rows survived GC", n)
	}
	if n := queryInt(t, f.admin, "SELECT count(*) FROM pg_database WHERE starts_with(datname, $1)", f.prefix); n != 1 {
		t.Fatalf("%d databases with the prefix after GC, want only the decoy", n)
	}
	if !dbExists(t, decoy) || !dbExists(t, app) {
		t.Fatal("GC dropped a database outside the catalog")
	}
	// A template in use survives any TTL.
	l := acquire(t, p, "", leasemode.DB)
	defer l.Release(t.Context(), true)
	if _, err := p.GC(t.Context()); err != nil {
		t.Fatal(err)
	}
	if !dbExists(t, p.templates[""].cur.Load().datname) || !dbExists(t, l.Database()) {
		t.Fatal("GC dropped the template or clone in use")
	}
}

func execAdmin(t testing.TB, url, sql string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := pgconn.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	if _, err := c.Exec(ctx, sql).ReadAll(); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

// TestLiveLeasesNotReclaimed: another pool's GC leaves a live pool's leases alone.
func TestLiveLeasesNotReclaimed(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	d := newMigDir(t, simpleSchema)
	a := f.pool(f.config(map[string]Migrator{"": d}))
	b := f.pool(f.config(map[string]Migrator{"": d}))
	l := acquire(t, a, "", leasemode.DB)
	defer l.Release(t.Context(), true)
	r, err := b.GC(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Reclaimed) != 0 || !dbExists(t, l.Database()) {
		t.Fatalf("GC reclaimed a live pool's lease: %+v", r)
	}
	infos, err := b.Leases(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if len(infos) != 1 || infos[0].Database != l.Database() || infos[0].Mine || infos[0].OwnerPID != os.Getpid() || infos[0].Mode != leasemode.DB {
		t.Fatalf("Leases() = %+v", infos)
	}
}

// TestUnusableCatalogLeftAlone: a catalog recording a version this binary cannot use
// (here: its own schema, tampered with) is reported and left alone: New fails with a
// message naming it, and no database it lists is dropped. (It replaces a test of the
// old behaviour, which rebuilt such a catalog and dropped its databases.)
func TestUnusableCatalogLeftAlone(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	d := newMigDir(t, simpleSchema)
	old := f.pool(f.config(map[string]Migrator{"": d}))
	l := acquire(t, old, "", leasemode.DB)
	tpl := old.templates[""].cur.Load().datname
	execAdmin(t, f.catalogURL(), "UPDATE schema_version SET version = 999")
	_, err := New(t.Context(), f.config(map[string]Migrator{"": d}))
	if err == nil {
		t.Fatal("New accepted a catalog of another version")
	}
	mustContain(t, err.Error(), catalogSchema(CatalogVersion), "version 999", "leaves it alone")
	if v := queryInt(t, f.catalogURL(), "SELECT version FROM schema_version"); v != 999 {
		t.Fatalf("catalog version %d: it was touched", v)
	}
	if !dbExists(t, tpl) || !dbExists(t, l.Database()) {
		t.Fatal("a database of the unusable catalog was dropped")
	}
	if got := query(t, connect(t, l), "SELECT count(*) FROM users"); got != "1" {
		t.Fatalf("live lease's clone: %q users", got)
	}
}

// TestCloseCutsLeasesAndJoins: Close drops the clones of leases still out, refuses new
// ones, is idempotent and leaves no goroutine behind.
func TestCloseCutsLeasesAndJoins(t *testing.T) {
	// Not parallel: it counts goroutines.
	f := newFixture(t)
	before := runtime.NumGoroutine()
	p, err := New(t.Context(), f.config(map[string]Migrator{"": newMigDir(t, simpleSchema)}))
	if err != nil {
		t.Fatal(err)
	}
	l := acquire(t, p, "", leasemode.DB)
	tx := acquire(t, p, "", leasemode.Tx)
	kept := &closer{}
	tx.Keep(kept)
	tx.Release(t.Context(), true)
	p.Close()
	p.Close()
	if dbExists(t, l.Database()) {
		t.Fatal("clone of a lease still out survived Close")
	}
	if kept.times() != 1 {
		t.Fatal("Close did not close a kept resource")
	}
	l.Release(t.Context(), true) // after Close: harmless
	if _, err := p.Acquire(t.Context(), "", leasemode.DB); !errors.Is(err, ErrClosed) || sqlStateOf(err) != "57P01" {
		t.Fatalf("Acquire after Close: %v", err)
	}
	eventually(t, "goroutines to exit", func() bool { return runtime.NumGoroutine() <= before })
}

// TestHeldTxLeasesDoNotStarveNewOnes: tx-mode leases come back to the pool, so the
// refill counts them as stock; but a client waiting for a clone while the held ones
// are still out needs a new clone now, not one of theirs later.
func TestHeldTxLeasesDoNotStarveNewOnes(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	cfg := f.config(map[string]Migrator{"": newMigDir(t, simpleSchema)})
	cfg.PoolSize = 1
	cfg.AcquireTimeout = 20 * time.Second
	p := f.pool(cfg)
	held := []*Lease{acquire(t, p, "", leasemode.Tx), acquire(t, p, "", leasemode.Tx)}
	third, err := p.Acquire(t.Context(), "", leasemode.Tx)
	if err != nil {
		t.Fatalf("a third tx lease while two are held: %v", err)
	}
	names := map[string]bool{third.Database(): true}
	for _, l := range held {
		names[l.Database()] = true
	}
	if len(names) != 3 {
		t.Fatalf("%d distinct clones for 3 tx leases", len(names))
	}
	third.Release(t.Context(), true)
	for _, l := range held {
		l.Release(t.Context(), true)
	}
}
