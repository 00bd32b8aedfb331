package proxy

import (
	"net/url"
	"strings"
	"testing"

	"go.uber.org/zap/zaptest"

	"github.com/pgtestproxy/pgtestproxy/internal/testpg"
)

// localCases are differential scripts for what ends with a transaction on a plain
// server: SET LOCAL, set_config(…, true) and SET CONSTRAINTS (README, FAQ "What does
// tx mode not do?").
var localCases = []struct {
	name string
	sc   script
}{
	{"SET LOCAL ends with the client's transaction", script{
		q("SHOW work_mem"),
		q("BEGIN"), q("SET LOCAL work_mem = '8MB'"), q("SHOW work_mem"), q("COMMIT"), q("SHOW work_mem"),
		q("BEGIN; SET LOCAL work_mem = '9MB'; COMMIT; SHOW work_mem"),
		q("BEGIN"), q("SET LOCAL search_path = nowhere"), q("ROLLBACK"), q("SHOW search_path"),
		q("BEGIN"), q(`SET LOCAL "work_mem" TO '7MB'`), q("SET LOCAL TIME ZONE 'Asia/Tokyo'"), q("SET LOCAL SCHEMA 'nowhere'"),
		q("SHOW TimeZone"), q("COMMIT"), q("SHOW TimeZone"), q("SHOW search_path"), q("SHOW work_mem"),
		q("BEGIN"), q("SET LOCAL myapp.user = 'u1'"), q("SELECT current_setting('myapp.user')"), q("COMMIT"),
		q("SELECT current_setting('myapp.user', true)"),
		q("BEGIN"), q("SET LOCAL work_mem = '8MB'"), q("COMMIT AND CHAIN"), q("SHOW work_mem"),
		q("SET LOCAL work_mem = '6MB'"), q("COMMIT"), q("SHOW work_mem"),
		q("BEGIN"), q("SET LOCAL nosuch = 1"), q("ROLLBACK"),
		q("BEGIN"), q("SET LOCAL work_mem = 'lots'"), q("COMMIT"), q("SHOW work_mem"),
		run1("BEGIN"), run1("SET LOCAL work_mem = '8MB'"), run1("SHOW work_mem"), run1("COMMIT"), run1("SHOW work_mem"),
		q("SELECT count(*) FROM pg_settings WHERE name LIKE 'pgtestproxy%'"),
	}},
	{"SET LOCAL and SET of one setting in a block", script{
		q("BEGIN"), q("SET LOCAL work_mem = '8MB'"), q("SET work_mem = '16MB'"), q("SET LOCAL work_mem = '9MB'"),
		q("COMMIT"), q("SHOW work_mem"), q("RESET work_mem"),
		q("BEGIN"), q("SET work_mem = '16MB'"), q("SET LOCAL work_mem = '8MB'"), q("COMMIT"), q("SHOW work_mem"),
		q("BEGIN"), q("SET LOCAL work_mem = '8MB'"), q("SAVEPOINT a"), q("SET work_mem = '32MB'"), q("ROLLBACK TO a"),
		q("COMMIT"), q("SHOW work_mem"),
		q("BEGIN"), q("SET LOCAL work_mem = '8MB'"), q("RESET work_mem"), q("SHOW work_mem"), q("COMMIT"), q("SHOW work_mem"),
		q("BEGIN"), q("SET LOCAL work_mem = '8MB'"), q("RESET ALL"), q("COMMIT"), q("SHOW work_mem"),
		q("BEGIN"), q("SAVEPOINT a"), q("SET LOCAL work_mem = '8MB'"), q("ROLLBACK TO a"), q("SET LOCAL work_mem = '9MB'"),
		q("COMMIT"), q("SHOW work_mem"),
	}},
	{"SET LOCAL in a query string's implicit block", script{
		q("SET LOCAL work_mem = '10MB'; SHOW work_mem"), q("SHOW work_mem"),
		q("SET LOCAL work_mem = '10MB'; COMMIT; SHOW work_mem"),
		q("SET LOCAL work_mem = '10MB'; BEGIN; SHOW work_mem"), q("SHOW work_mem"), q("COMMIT"), q("SHOW work_mem"),
		q("SET LOCAL work_mem = '10MB'; SELECT 1/0"), q("SHOW work_mem"),
	}},
	{"set_config with is_local", script{
		q("SELECT set_config('work_mem', '11MB', true)"), q("SHOW work_mem"),
		q("SELECT set_config('work_mem', '12MB', true), current_setting('work_mem')"), q("SHOW work_mem"),
		q("select pg_catalog.SET_CONFIG ( 'work_mem' , '12MB' , TRUE )"), q("SHOW work_mem"),
		q("SELECT set_config('work_mem', '13MB', false)"), q("SHOW work_mem"), q("RESET work_mem"),
		run1("SELECT set_config('work_mem', $1, true)", "13MB"), q("SHOW work_mem"),
		run1("SELECT set_config($1, '14MB', true)", "work_mem"), q("SHOW work_mem"),
		q("BEGIN"), q("SELECT set_config('work_mem', '8MB', true)"), q("SHOW work_mem"), q("COMMIT"), q("SHOW work_mem"),
		q("SELECT set_config('myapp.claims', 'c1', true)"), q("SELECT current_setting('myapp.claims', true)"),
		ext(parse("", "SELECT set_config('work_mem', '9MB', true)"), bind("", ""), execM(""),
			parse("", "SHOW work_mem"), bind("", ""), execM(""), syncM()),
		q("SHOW work_mem"),
	}},
	{"SET LOCAL in routines and DO blocks", script{
		q(`CREATE FUNCTION setwm() RETURNS text LANGUAGE plpgsql AS $$BEGIN SET LOCAL work_mem = '20MB'; RETURN current_setting('work_mem'); END$$`),
		q("SELECT setwm()"), q("SHOW work_mem"),
		q("BEGIN"), q("SELECT setwm()"), q("SHOW work_mem"), q("COMMIT"), q("SHOW work_mem"),
		q(`CREATE PROCEDURE setclaims(v text) LANGUAGE plpgsql AS $$BEGIN PERFORM set_config('myapp.claims', v, true); END$$`),
		q("CALL setclaims('c1')"), q("SELECT current_setting('myapp.claims', true)"),
		q(`DO $$BEGIN SET LOCAL work_mem = '30MB'; END$$`), q("SHOW work_mem"),
		q("BEGIN; CREATE FUNCTION f2() RETURNS text LANGUAGE sql AS $$SELECT set_config('work_mem', '40MB', true)$$; SELECT f2(); COMMIT"),
		q("SHOW work_mem"), q("SELECT f2(), current_setting('work_mem')"), q("SHOW work_mem"),
		run1("SELECT setwm()"), run1("SHOW work_mem"),
		q("SET work_mem = '2MB'"), q("SELECT setwm()"), q("SHOW work_mem"),
	}},
	{"SET CONSTRAINTS ends with the client's transaction", script{
		q(deferredSetup),
		q("BEGIN"), q("SET CONSTRAINTS ALL IMMEDIATE"), q("COMMIT"),
		q("CREATE TABLE p2 (id int PRIMARY KEY)"),
		// Constraints created in a block are used before any check of the proxy's.
		q("BEGIN"), q("CREATE TABLE c9 (pid int REFERENCES p2 DEFERRABLE INITIALLY DEFERRED)"),
		q("INSERT INTO c9 VALUES (1)"), q("SELECT 1"), q("ROLLBACK"),
		q("BEGIN; CREATE TABLE c9 (pid int REFERENCES p2 DEFERRABLE INITIALLY DEFERRED); INSERT INTO c9 VALUES (1); SELECT 1; ROLLBACK"),
		q("BEGIN"), q("SET CONSTRAINTS ALL DEFERRED"), q("COMMIT"),
		q("BEGIN"), q("CREATE TABLE c9 (pid int REFERENCES p2 DEFERRABLE INITIALLY IMMEDIATE)"),
		q("INSERT INTO c9 VALUES (1)"), q("ROLLBACK"),
		q(`CREATE TABLE c2 (pid int REFERENCES p2 DEFERRABLE INITIALLY DEFERRED);
			CREATE TABLE c3 (pid int REFERENCES p2 DEFERRABLE INITIALLY IMMEDIATE)`),
		q("BEGIN"), q("SET CONSTRAINTS ALL DEFERRED"), q("INSERT INTO c3 VALUES (2)"), q("SELECT 1"),
		q("set constraints all immediate"), q("ROLLBACK"),
		q("SET CONSTRAINTS ALL DEFERRED; INSERT INTO c3 VALUES (3); SELECT 1"),
		q("BEGIN"), q("SET CONSTRAINTS c2_pid_fkey IMMEDIATE"), q("INSERT INTO c2 VALUES (4)"), q("ROLLBACK"),
		run1("BEGIN"), run1("SET CONSTRAINTS ALL IMMEDIATE"), run1("INSERT INTO child VALUES (5)"), run1("ROLLBACK"),
		q("SELECT count(*) FROM c2"),
	}},
}

// What a plain server ends with the transaction ends, through tx mode, with the
// client's transaction, its query string's implicit block or its autocommit statement.
func TestTxLocalSettings(t *testing.T) {
	t.Parallel()
	env := newDiffEnv(t)
	for _, tc := range localCases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			env.compare(t, tc.sc)
		})
	}
}

// roCases are differential scripts for READ ONLY beyond BEGIN READ ONLY: READ WRITE
// after it, and a session's default_transaction_read_only.
var roCases = []struct {
	name string
	sc   script
}{
	{"READ WRITE after READ ONLY", script{
		q("BEGIN READ ONLY"), q("SET TRANSACTION READ WRITE"), q("SHOW transaction_read_only"),
		q("INSERT INTO items VALUES (10, 'x')"), q("COMMIT"),
		q("BEGIN READ ONLY"), q("SELECT 1"), q("SET TRANSACTION READ WRITE"), q("ROLLBACK"),
		q("BEGIN"), q("SET TRANSACTION READ ONLY"), q("SET transaction_read_only = off"),
		q("INSERT INTO items VALUES (11, 'y')"), q("COMMIT"),
		q("BEGIN READ ONLY"), q("SAVEPOINT a"), q("SET TRANSACTION READ WRITE"), q("ROLLBACK"),
		q("BEGIN READ ONLY; SET TRANSACTION READ WRITE; INSERT INTO items VALUES (12, 'z'); COMMIT"),
		run1("BEGIN READ ONLY"), run1("SET TRANSACTION READ WRITE"), run1("INSERT INTO items VALUES (13, 'w')"), run1("COMMIT"),
		q("BEGIN READ ONLY"), q("SELECT 1"), q("SET TRANSACTION READ WRITE"), q("COMMIT"),
		q("BEGIN READ ONLY"), q("COMMIT AND CHAIN"), q("SET TRANSACTION READ WRITE"), q("INSERT INTO items VALUES (14, 'v')"), q("COMMIT"),
		q(countItems),
	}},
	{"default_transaction_read_only", script{
		q("SET default_transaction_read_only = on"), q("SHOW transaction_read_only"),
		q("INSERT INTO items VALUES (10, 'x')"), q(countItems),
		q("BEGIN"), q("SHOW transaction_read_only"), q("DELETE FROM items"), q("ROLLBACK"),
		q("BEGIN READ WRITE"), q("INSERT INTO items VALUES (11, 'y')"), q("COMMIT"),
		q("START TRANSACTION READ WRITE"), q("COMMIT AND CHAIN"), q("SHOW transaction_read_only"), q("COMMIT"),
		q("BEGIN"), q("COMMIT AND CHAIN"), q("SHOW transaction_read_only"), q("COMMIT"),
		q("BEGIN; ROLLBACK; INSERT INTO items VALUES (12, 'z')"),
		q("BEGIN; COMMIT; INSERT INTO items VALUES (12, 'z')"),
		q("SELECT 1/0"), q("INSERT INTO items VALUES (13, 'z')"),
		run1("INSERT INTO items VALUES ($1, 'e')", "14"),
		q("BEGIN"), q("SET TRANSACTION READ WRITE"), q("INSERT INTO items VALUES (15, 'f')"), q("COMMIT"),
		q("SET default_transaction_read_only = off"), q("INSERT INTO items VALUES (16, 'g')"),
		q(countItems),
	}},
}

// READ WRITE after READ ONLY and a session's default_transaction_read_only behave
// through tx mode as on a plain server.
func TestTxReadOnlyModes(t *testing.T) {
	t.Parallel()
	env := newDiffEnv(t)
	for _, tc := range roCases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			env.compare(t, tc.sc)
		})
	}
}

// isoCases are differential scripts, each a lease of its own, whose first block asks
// for an isolation level.
var isoCases = []struct {
	name string
	sc   script
}{
	{"repeatable read first", script{
		q("BEGIN ISOLATION LEVEL REPEATABLE READ"), q("SELECT current_setting('transaction_isolation')"),
		q("INSERT INTO items VALUES (10, 'x')"), q("COMMIT"), q(countItems),
		q("BEGIN ISOLATION LEVEL REPEATABLE READ"), q("SHOW transaction_isolation"), q("COMMIT"),
	}},
	{"serializable read only first", script{
		q("BEGIN ISOLATION LEVEL SERIALIZABLE, READ ONLY"), q("SHOW transaction_isolation"), q("SHOW transaction_read_only"),
		q("INSERT INTO items VALUES (10, 'x')"), q("ROLLBACK"),
		q("START TRANSACTION ISOLATION LEVEL SERIALIZABLE"), q("SHOW transaction_isolation"), q("COMMIT"),
	}},
	{"set transaction first", script{
		q("BEGIN"), q("SET TRANSACTION ISOLATION LEVEL SERIALIZABLE"), q("SHOW transaction_isolation"),
		q("INSERT INTO items VALUES (10, 'x')"), q("COMMIT"), q(countItems),
	}},
	{"set transaction read only first", script{
		q("BEGIN READ ONLY"), q("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ"), q("SHOW transaction_isolation"),
		q("INSERT INTO items VALUES (10, 'x')"), q("ROLLBACK"),
	}},
	{"extended protocol first", script{
		run1("BEGIN ISOLATION LEVEL REPEATABLE READ"), run1("SHOW transaction_isolation"), run1("COMMIT"),
	}},
	{"query string first", script{
		q("BEGIN ISOLATION LEVEL SERIALIZABLE; SHOW transaction_isolation; COMMIT"),
	}},
}

// A lease whose first block asks for an isolation level runs that block at its level.
func TestTxIsolationFirst(t *testing.T) {
	t.Parallel()
	env := newDiffEnv(t)
	for _, tc := range isoCases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			env.compare(t, tc.sc)
		})
	}
}

// compareWith is compare with the same runtime parameters (URL query parameters, such
// as options) on both connections.
func (e *diffEnv) compareWith(t *testing.T, params url.Values, sc script) {
	t.Helper()
	u, err := url.Parse(e.plainDB(t))
	if err != nil {
		t.Fatal(err)
	}
	qv := u.Query()
	for k, v := range params {
		qv[k] = v
	}
	u.RawQuery = strings.ReplaceAll(qv.Encode(), "+", "%20")
	plain := openRaw(t, u.String())
	proxied := openRaw(t, proxyURL(e.s, "app", "mode=tx", strings.ReplaceAll(params.Encode(), "+", "%20")))
	for i, st := range sc {
		want := plain.exchange(t, st)
		got := proxied.exchange(t, st)
		if strings.Join(want, "\n") != strings.Join(got, "\n") {
			t.Fatalf("step %d %s: replies differ\nplain server:\n  %s\nthrough the proxy:\n  %s",
				i, describeStep(st), strings.Join(want, "\n  "), strings.Join(got, "\n  "))
		}
	}
}

// default_transaction_read_only from the startup packet makes the client's
// transactions read-only, and the lease still ends cleanly (its sequences restored)
// and starts again on the kept backend.
func TestTxReadOnlyFromStartup(t *testing.T) {
	t.Parallel()
	p := newTestProvider(t)
	dbURL, tpl := testpg.NewDatabase(t)
	testpg.Exec(t, dbURL, `CREATE TABLE items (id int PRIMARY KEY, name text NOT NULL);
		INSERT INTO items VALUES (1, 'one'); CREATE SEQUENCE s`)
	p.templates["app"] = tpl
	env := &diffEnv{s: startProxy(t, Config{Provider: p, Logger: zaptest.NewLogger(t)}), p: p, tpl: tpl}
	params := url.Values{"options": {"-c default_transaction_read_only=on"}}
	for i := range 2 { // the second lease reuses the clone and its kept backend
		t.Run("lease", func(t *testing.T) {
			env.compareWith(t, params, script{
				q("SHOW transaction_read_only"), q("INSERT INTO items VALUES (10, 'x')"),
				q("BEGIN"), q("DELETE FROM items"), q("ROLLBACK"),
				q("BEGIN READ WRITE"), q("INSERT INTO items VALUES (11, 'y')"), q("SELECT nextval('s')"), q("COMMIT"),
				q(countItems),
			})
		})
		waitFor(t, "lease released", func() bool { return len(p.releases()) == i+1 })
		if r := p.releases()[i]; !r.clean {
			t.Fatalf("lease %d of %s released unclean", i, r.database)
		}
	}
}

// A client's statement_timeout, from the startup packet or SET, applies to its
// statements as on a plain server.
func TestTxStatementTimeout(t *testing.T) {
	t.Parallel()
	env := newDiffEnv(t)
	sc := script{
		q("SHOW statement_timeout"), q("SELECT pg_sleep(0.3)"), q("SELECT 1"),
		q("BEGIN"), q("SELECT pg_sleep(0.3)"), q("ROLLBACK"),
		q("SET statement_timeout = '100ms'"), q("SELECT pg_sleep(0.3)"), q("SELECT 1"),
		q("BEGIN; SET LOCAL statement_timeout = 0; SELECT pg_sleep(0.2); COMMIT"), q("SELECT pg_sleep(0.3)"),
		q("RESET statement_timeout"), q("SHOW statement_timeout"),
	}
	env.compareWith(t, url.Values{"options": {"-c statement_timeout=100ms"}}, sc)
	env.compareWith(t, url.Values{"statement_timeout": {"100ms"}}, sc)
}

// A routine of the template that sets a setting locally, called by an autocommit
// statement or in a block, has it end with the client's transaction, as on a plain
// server (routines the lease creates: localCases).
func TestTxLocalSettingsTemplateRoutine(t *testing.T) {
	t.Parallel()
	env := newDiffEnv(t)
	testpg.Exec(t, testpg.URL(t, env.tpl), `CREATE FUNCTION tpl_setwm() RETURNS text LANGUAGE plpgsql AS
		$$BEGIN SET LOCAL work_mem = '21MB'; RETURN current_setting('work_mem'); END$$;
		CREATE FUNCTION tpl_claims(v text) RETURNS text LANGUAGE sql AS $$SELECT set_config('myapp.tplclaims', v, true)$$`)
	env.compare(t, script{
		q("SHOW work_mem"), q("SELECT tpl_setwm()"), q("SHOW work_mem"),
		q("BEGIN"), q("SELECT tpl_setwm()"), q("SHOW work_mem"), q("COMMIT"), q("SHOW work_mem"),
		q("SELECT tpl_claims('c1')"), q("SELECT current_setting('myapp.tplclaims', true)"),
		run1("SELECT tpl_setwm()"), q("SHOW work_mem"),
	})
}
