package pool

import (
	"context"
	"testing"

	"github.com/pgtestproxy/pgtestproxy/internal/leasemode"
	"github.com/pgtestproxy/pgtestproxy/internal/testpg"
)

// reuseSchema has something of every kind a lease can change: rows, a sequence of its
// own and a serial's, a function, a grant, a comment and a large object.
var reuseSchema = map[string]string{
	"001_app.up.sql": `CREATE TABLE users (id serial PRIMARY KEY, name text NOT NULL);
INSERT INTO users (name) VALUES ('ann'), ('bob');
CREATE SEQUENCE tickets;
SELECT nextval('tickets');
CREATE FUNCTION one() RETURNS int LANGUAGE sql AS 'SELECT 1';
GRANT SELECT ON users TO PUBLIC;
COMMENT ON TABLE users IS 'people';
SELECT lo_create(4242);
CREATE TABLE empty (x int);
`,
}

// onDB runs sql with the clone's name for %[1]s, through EXECUTE (ALTER DATABASE and
// COMMENT ON DATABASE take a name, not an expression).
func onDB(sql string) string {
	return "DO $$ BEGIN EXECUTE format('" + sql + "', current_database()); END $$"
}

// reuseCases are what a db-mode lease does to its clone, and whether the clone may be
// used again afterwards.
var reuseCases = []struct {
	name   string
	sql    string // "" = connect and leave
	then   string // run by a second connection once the first has exited ("" = none)
	reused bool
}{
	{"nothing", "", "", true},
	{"read only", "SELECT * FROM users; SELECT count(*) FROM pg_class; SELECT one(); SELECT last_value FROM tickets", "", true},
	{"read in a transaction", "BEGIN; SELECT * FROM users; COMMIT", "", true},
	{"insert", "INSERT INTO users (name) VALUES ('cy')", "", false},
	{"update", "UPDATE users SET name = 'al' WHERE name = 'ann'", "", false},
	{"update to the same value", "UPDATE users SET name = name", "", false},
	{"delete", "DELETE FROM users WHERE name = 'bob'", "", false},
	{"insert rolled back", "BEGIN; INSERT INTO users (name) VALUES ('cy'); ROLLBACK", "", false},
	{"copy", "COPY users (name) FROM PROGRAM 'echo dee'", "", false},
	{"create table", "CREATE TABLE t (x int)", "", false},
	{"create table rolled back", "BEGIN; CREATE TABLE t (x int); ROLLBACK", "", false},
	{"alter table", "ALTER TABLE users ADD COLUMN age int", "", false},
	{"create index", "CREATE INDEX ON users (name)", "", false},
	{"create function", "CREATE FUNCTION two() RETURNS int LANGUAGE sql AS 'SELECT 2'", "", false},
	{"replace function", "CREATE OR REPLACE FUNCTION one() RETURNS int LANGUAGE sql AS 'SELECT 1'", "", false},
	{"drop table", "DROP TABLE users", "", false},
	{"truncate", "TRUNCATE users", "", false},
	{"nextval", "SELECT nextval('tickets')", "", false},
	{"serial nextval", "SELECT nextval('users_id_seq')", "", false},
	{"setval", "SELECT setval('tickets', 100)", "", false},
	{"nextval rolled back", "BEGIN; SELECT nextval('tickets'); ROLLBACK", "", false},
	{"alter sequence restart", "ALTER SEQUENCE tickets RESTART WITH 50", "", false},
	{"lo_create", "SELECT lo_create(0)", "", false},
	{"lo_unlink", "SELECT lo_unlink(4242)", "", false},
	{"comment", "COMMENT ON TABLE users IS 'folk'", "", false},
	{"comment on function", "COMMENT ON FUNCTION one() IS 'one'", "", false},
	{"grant", "GRANT INSERT ON users TO PUBLIC", "", false},
	{"revoke", "REVOKE SELECT ON users FROM PUBLIC", "", false},
	{"temp table", "CREATE TEMP TABLE scratch (x int); INSERT INTO scratch VALUES (1)", "", false},
	{"vacuum", "VACUUM users", "", false},
	{"analyze", "ANALYZE users", "", false},
	{"analyze an empty table", "ANALYZE empty", "", false},
	{"vacuum an empty table", "VACUUM empty", "", false},
	{"stats reset after insert", "INSERT INTO users (id, name) VALUES (100, 'cy')", "SELECT pg_stat_reset()", false},
	{"table counters reset after vacuum", "VACUUM empty", "SELECT pg_stat_reset_single_table_counters('empty'::regclass)", false},
	{"read, then read again", "SELECT * FROM users", "SELECT * FROM users", true},
	{"alter database set", onDB("ALTER DATABASE %I SET work_mem = ''8MB''"), "", false},
	{"alter role in database set", onDB("ALTER ROLE CURRENT_USER IN DATABASE %I SET work_mem = ''8MB''"), "", false},
	{"comment on database", onDB("COMMENT ON DATABASE %I IS ''mine''"), "", false},
	{"database connection limit", onDB("ALTER DATABASE %I CONNECTION LIMIT 50"), "", false},
	{"subscription", "CREATE SUBSCRIPTION s CONNECTION 'host=/nonexistent dbname=x' PUBLICATION p WITH (connect = false)", "", false},
}

// TestReuseDetects: a db-mode clone goes back to the pool after its lease only when
// the lease left it unchanged; every kind of change drops it (and the drop completes).
func TestReuseDetects(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	p := f.pool(f.config(map[string]Migrator{"": newMigDir(t, reuseSchema)}))
	for _, tc := range reuseCases {
		t.Run(tc.name, func(t *testing.T) {
			l := acquire(t, p, "", leasemode.DB)
			c := connect(t, l)
			if tc.sql != "" {
				query(t, c, tc.sql)
			}
			c.Close(t.Context())
			if tc.then != "" {
				eventually(t, "the first connection gone", func() bool {
					gone, err := p.backendsGone(t.Context(), l.Database(), 0)
					return err == nil && gone
				})
				c := connect(t, l)
				query(t, c, tc.then)
				c.Close(t.Context())
			}
			// The judge waits for the backends to exit for a bounded time only; on a
			// loaded machine an exit can take longer, which drops the clone (safe, but
			// not what the case tests).
			eventually(t, "the connections gone", func() bool {
				gone, err := p.backendsGone(t.Context(), l.Database(), 0)
				return err == nil && gone
			})
			if got := releaseOutcome(t, p, l, true); got != tc.reused {
				t.Fatalf("%s: reused = %v, want %v", tc.sql, got, tc.reused)
			}
		})
	}
}

// TestReuseIgnoresOtherDatabases: what happens elsewhere on the server during a
// read-only lease — another database's writes, autovacuum or a VACUUM of the shared
// catalogs (whose statistics every database sees) — does not count against the clone.
func TestReuseIgnoresOtherDatabases(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	p := f.pool(f.config(map[string]Migrator{"": newMigDir(t, reuseSchema)}))
	other := testpg.UniqueName(t, "reuse_other_")
	execAdmin(t, f.admin, "CREATE DATABASE "+ident(other))
	t.Cleanup(func() { execAdmin(t, f.admin, "DROP DATABASE IF EXISTS "+ident(other)) })
	for _, elsewhere := range [][]string{{"VACUUM pg_database", "ANALYZE pg_authid", "VACUUM pg_shdepend"},
		{"CREATE TABLE t (x int); INSERT INTO t VALUES (1)", "VACUUM t"}} {
		l := acquire(t, p, "", leasemode.DB)
		c := connect(t, l)
		query(t, c, "SELECT * FROM users")
		for _, sql := range elsewhere {
			execAdmin(t, testpg.URL(t, other), sql)
		}
		c.Close(t.Context())
		if !releaseOutcome(t, p, l, true) {
			t.Fatalf("a read-only lease's clone was dropped after %q ran in another database", elsewhere)
		}
	}
}

// TestReuseNotClean: a lease the proxy reports not clean is dropped, however it looks.
func TestReuseNotClean(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	p := f.pool(f.config(map[string]Migrator{"": newMigDir(t, reuseSchema)}))
	l := acquire(t, p, "", leasemode.DB)
	if releaseOutcome(t, p, l, false) {
		t.Fatal("a lease released not clean was reused")
	}
}

// TestReuseOff: with NoReuse every db-mode clone is dropped.
func TestReuseOff(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	cfg := f.config(map[string]Migrator{"": newMigDir(t, reuseSchema)})
	cfg.NoReuse = true
	p := f.pool(cfg)
	l := acquire(t, p, "", leasemode.DB)
	if releaseOutcome(t, p, l, true) {
		t.Fatal("a clone was reused with NoReuse set")
	}
}

// TestReuseAfterTxLease: a clone a tx-mode lease used has no evidence left, so a
// db-mode lease of it is dropped after it, however clean.
func TestReuseAfterTxLease(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	cfg := f.config(map[string]Migrator{"": newMigDir(t, reuseSchema)})
	cfg.PoolSize = 1
	p := f.pool(cfg)
	tx := acquire(t, p, "", leasemode.Tx)
	name := tx.Database()
	tx.Release(t.Context(), true)
	// The tx lease's clone comes back ready; lease db-mode clones until it is the one.
	var l *Lease
	for range 10 {
		l = acquire(t, p, "", leasemode.DB)
		if l.Database() == name {
			break
		}
		t.Cleanup(func() { l.Release(context.Background(), true) })
	}
	if l.Database() != name {
		t.Fatalf("the tx lease's clone %s was not handed to a db lease within 10 leases", name)
	}
	if releaseOutcome(t, p, l, true) {
		t.Fatal("a clone a tx-mode lease used was reused by db mode")
	}
}

// TestReusedIsPristine: a reused clone is what the next lease gets, and it holds the
// template's exact contents.
func TestReusedIsPristine(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	cfg := f.config(map[string]Migrator{"": newMigDir(t, reuseSchema)})
	cfg.PoolSize = 1
	p := f.pool(cfg)
	const contents = `SELECT md5(concat_ws('|',
		(SELECT string_agg(id || ':' || name, ',' ORDER BY id) FROM users),
		(SELECT ROW(last_value, is_called)::text FROM tickets),
		(SELECT ROW(last_value, is_called)::text FROM users_id_seq),
		(SELECT string_agg(oid::text, ',') FROM pg_largeobject_metadata),
		(SELECT string_agg(relname || ':' || relkind::text, ',' ORDER BY relname) FROM pg_class WHERE relnamespace = 'public'::regnamespace),
		obj_description('users'::regclass, 'pg_class'),
		(SELECT relacl::text FROM pg_class WHERE relname = 'users')))`
	first := acquire(t, p, "", leasemode.DB)
	c := connect(t, first)
	want := query(t, c, contents)
	c.Close(t.Context())
	name := first.Database()
	if !releaseOutcome(t, p, first, true) {
		t.Fatal("a read-only lease's clone was not reused")
	}
	var l *Lease
	for range 10 {
		l = acquire(t, p, "", leasemode.DB)
		if l.Database() == name {
			break
		}
		t.Cleanup(func() { l.Release(context.Background(), true) })
	}
	if l.Database() != name {
		t.Fatalf("the reused clone %s was not handed out within 10 leases", name)
	}
	c = connect(t, l)
	if got := query(t, c, contents); got != want {
		t.Fatalf("reused clone's contents %s, want the template's %s", got, want)
	}
	c.Close(t.Context())
	l.Release(t.Context(), true)
}

// releaseOutcome releases l and reports whether its clone went back to the pool
// (true) or was dropped (false), waiting for the pool's judgement and, for a drop, for
// the clone to be gone. The test's leases must be released one at a time.
func releaseOutcome(t *testing.T, p *Pool, l *Lease, clean bool) (reused bool) {
	t.Helper()
	before := p.Counters()
	l.Release(t.Context(), clean)
	var after Counters
	eventually(t, "the released clone judged", func() bool {
		after = p.Counters()
		return after.ClonesReused+after.ClonesNotReused > before.ClonesReused+before.ClonesNotReused
	})
	reused = after.ClonesReused > before.ClonesReused
	if !reused {
		eventually(t, "the changed clone dropped", func() bool { return !dbExists(t, l.Database()) })
	}
	return reused
}

// TestDropWithSubscription: a clone in which a lease left a subscription is dropped
// all the same (DROP DATABASE alone refuses it with 55006, and the clone leaked).
func TestDropWithSubscription(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	cfg := f.config(map[string]Migrator{"": newMigDir(t, simpleSchema)})
	cfg.NoReuse = true
	p := f.pool(cfg)
	l := acquire(t, p, "", leasemode.DB)
	c := connect(t, l)
	query(t, c, "CREATE SUBSCRIPTION s CONNECTION 'host=/nonexistent dbname=x' PUBLICATION p WITH (connect = false)")
	c.Close(t.Context())
	l.Release(t.Context(), true)
	eventually(t, "the clone with a subscription dropped", func() bool {
		return !dbExists(t, l.Database()) &&
			queryInt(t, f.catalogURL(), "SELECT count(*) FROM migrated_dbs WHERE datname = $1", l.Database()) == 0
	})
}
