package proxy

import (
	"testing"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/pgtestproxy/pgtestproxy/internal/testpg"
)

const countItems = "SELECT count(*) FROM items"

// deferredSetup creates a table whose foreign key is checked at commit.
const deferredSetup = `CREATE TABLE parent (id int PRIMARY KEY);
	CREATE TABLE child (pid int REFERENCES parent DEFERRABLE INITIALLY DEFERRED)`

// diffCases are client message sequences whose replies through the proxy in tx mode
// must be the ones a plain server sends (README, FAQ).
var diffCases = []struct {
	name string
	sc   script
}{
	{"errors outside a transaction", script{
		q("INSERT INTO items VALUES (1, 'dup')"),
		q("INSERT INTO items VALUES (10, 'ten'); INSERT INTO items VALUES (1, 'dup')"),
		q(countItems),
		q("SELECT 1/0"), q("SET search_path = nowhere; SELECT 1/0"), q("SHOW search_path"),
		run1("INSERT INTO items VALUES ($1, 'x')", "1"),
		run1(countItems),
	}},
	{"units of Parse, Describe and Close alone", script{
		// Such a unit leaves the proxy's savepoint where it was: the work before it
		// stays when a later unit, or the unit itself, fails.
		q("INSERT INTO items VALUES (10, 'ten')"),
		ext(parse("ins", "INSERT INTO items VALUES ($1, 'p')"), describe('S', "ins"), syncM()),
		ext(bind("", "ins", "1"), execM(""), syncM()), // a duplicate key
		q(countItems),
		ext(parse("", "SELEC 1"), syncM()), // a syntax error at Parse
		q(countItems),
		ext(parse("div", "SELECT 1/0"), describe('S', "div"), syncM()),
		ext(bind("", "div"), execM(""), syncM()),
		ext(bind("", "ins", "11"), execM(""), syncM()),
		ext(closeMsg('S', "div"), syncM()),
		ext(parse("cnt", countItems), describe('S', "cnt"), syncM()),
		ext(bind("", "cnt"), describe('P', ""), execM(""), syncM()),
		ext(describe('S', "nosuch"), syncM()),
		q(countItems),
	}},
	{"Parse-only units around deferred constraints", script{
		q(deferredSetup),
		ext(parse("child", "INSERT INTO child VALUES ($1)"), describe('S', "child"), syncM()),
		ext(bind("", "child", "7"), execM(""), syncM()), // fails at the unit's commit
		ext(parse("parent", "INSERT INTO parent VALUES ($1)"), syncM()),
		ext(bind("", "parent", "7"), execM(""), syncM()),
		ext(bind("", "child", "7"), execM(""), syncM()),
		q("SELECT count(*) FROM child"),
	}},
	{"errors inside a client transaction", script{
		q("BEGIN"), q("INSERT INTO items VALUES (10, 'ten')"), q("SELECT 1/0"), q(countItems),
		q("ROLLBACK"), q(countItems),
	}},
	{"commit of a failed block", script{
		q("BEGIN"), q("INSERT INTO items VALUES (10, 'ten')"), q("SELECT 1/0"), q("COMMIT"), q(countItems),
		q("START TRANSACTION"), q("SELECT 1/0"), q("END"), q(countItems),
	}},
	{"commit and rollback in every spelling", script{
		q("begin"), q("INSERT INTO items VALUES (10, 'ten')"), q("commit"),
		q("BEGIN WORK"), q("INSERT INTO items VALUES (11, 'x')"), q("ABORT"),
		q("/* c */ Begin Transaction ;"), q("DELETE FROM items WHERE id = 1"), q("END WORK;"),
		q("START TRANSACTION"), q("DELETE FROM items"), q("ROLLBACK WORK"),
		q("BEGIN; INSERT INTO items VALUES (12, 'y'); COMMIT TRANSACTION"),
		q(countItems),
	}},
	{"warnings for misplaced transaction control", script{
		q("COMMIT"), q("ROLLBACK"), q("END"), q("ABORT"),
		q("BEGIN"), q("BEGIN"), q("START TRANSACTION"), q("COMMIT"), q("COMMIT"),
		q("SAVEPOINT a"), q("RELEASE a"), q("ROLLBACK TO a"), q("ROLLBACK TO SAVEPOINT a"),
		q("COMMIT AND CHAIN"), q("ROLLBACK AND CHAIN"), q("SELECT 1; SAVEPOINT a"),
		q("SET TRANSACTION READ ONLY"),
	}},
	{"nested savepoints", script{
		q("BEGIN"), q("SAVEPOINT a"), q("INSERT INTO items VALUES (10, 'ten')"), q("SAVEPOINT b"),
		q("INSERT INTO items VALUES (11, 'x')"), q("SELECT 1/0"), q("ROLLBACK TO b"), q(countItems),
		q("SAVEPOINT c"), q("INSERT INTO items VALUES (12, 'y')"), q("RELEASE SAVEPOINT c"),
		q("ROLLBACK TO SAVEPOINT a"), q(countItems), q("RELEASE a"), q("RELEASE a"), q("ROLLBACK"),
		q("BEGIN; SAVEPOINT s; SELECT 1/0; ROLLBACK TO s; INSERT INTO items VALUES (13, 'z'); COMMIT"),
		q(countItems),
	}},
	{"chained transactions", script{
		q("BEGIN"), q("INSERT INTO items VALUES (10, 'ten')"), q("COMMIT AND CHAIN"),
		q("INSERT INTO items VALUES (11, 'x')"), q("ROLLBACK AND CHAIN"), q("SELECT 1/0"),
		q("COMMIT AND NO CHAIN"), q(countItems),
	}},
	{"multi-statement strings", script{
		q("INSERT INTO items VALUES (10, 'a'); BEGIN; INSERT INTO items VALUES (11, 'b')"), q(countItems), q("ROLLBACK"),
		q("INSERT INTO items VALUES (12, 'c'); COMMIT; INSERT INTO items VALUES (13, 'd'); SELECT 1/0"),
		q("INSERT INTO items VALUES (14, 'e'); ROLLBACK; SELECT count(*) FROM items"),
		q("BEGIN; INSERT INTO items VALUES (15, 'f'); COMMIT; INSERT INTO items VALUES (16, 'g'); SELECT 1/0"),
		q("INSERT INTO items VALUES (17, 'h'); BEGIN; INSERT INTO items VALUES (18, 'i'); COMMIT; SELECT 1/0"),
		q("BEGIN; SELECT 1; COMMIT; BEGIN; SELECT 2"), q("COMMIT; SELECT 3"),
		q("SELECT 1;;; ; SELECT 2;"), q(""), q(" ; -- nothing"),
		q(countItems),
	}},
	{"syntax errors keep their position", script{
		q("BEGIN; SELECT 1 +"), q("SELECT 'é'; COMMIT; SELECT nosuchcolumn FROM items"), q("ROLLBACK"),
		q("BEGIN; SELECT 'é' FROM nosuchtable"), q("COMMIT; SELECT 1 +"),
	}},
	{"extended-protocol errors in a pipeline", script{
		ext(parse("", "INSERT INTO items VALUES ($1, 'p')"), bind("", "", "10"), execM(""),
			parse("", "INSERT INTO items VALUES ($1, 'p')"), bind("", "", "1"), execM(""),
			parse("", countItems), bind("", ""), execM(""), syncM()),
		run1(countItems),
		step{msgs: ext(parse("", "SELECT 1/0"), bind("", ""), execM(""), &pgproto3.Query{String: "SELECT 1"},
			parse("", "SELECT 2"), bind("", ""), execM(""), syncM()).msgs, rfqs: 1},
		ext(parse("s1", countItems), syncM(), bind("", "s1"), execM(""), syncM(),
			parse("", "SELECT nosuch"), syncM(), bind("", "s1"), execM(""), syncM()),
		q(countItems),
	}},
	{"pipelined autocommit units", script{
		ext(parse("", "INSERT INTO items VALUES (20, 'a')"), bind("", ""), execM(""), syncM(),
			parse("", "INSERT INTO items VALUES (20, 'a')"), bind("", ""), execM(""), syncM(),
			parse("", "INSERT INTO items VALUES (21, 'b')"), bind("", ""), execM(""), syncM(),
			&pgproto3.Query{String: countItems}),
	}},
	{"extended-protocol transaction control", script{
		ext(parse("b", "BEGIN"), parse("c", "COMMIT"), parse("r", "ROLLBACK"), describe('S', "b"), syncM()),
		ext(bind("", "b"), describe('P', ""), execM(""), syncM()),
		run1("INSERT INTO items VALUES (30, 'x')"),
		ext(bind("", "c"), execM(""), syncM()),
		ext(bind("", "b"), execM(""), bind("", "b"), execM(""), syncM()),
		ext(parse("", "SELECT 1/0"), bind("", ""), execM(""), syncM()),
		ext(bind("", "b"), execM(""), syncM()),
		ext(bind("", "c"), execM(""), syncM()),
		ext(bind("", "c"), execM(""), syncM()),
		ext(bind("p", "b"), execM("p"), run1(countItems).msgs[0], bind("", ""), execM(""), bind("", "r"), execM(""), syncM()),
		ext(parse("", "SAVEPOINT x"), bind("", ""), execM(""), syncM()),
		ext(closeMsg('S', "b"), parse("b", "START TRANSACTION READ WRITE"), syncM()),
		q(countItems),
	}},
	{"extended begin and error before sync", script{
		ext(parse("", "BEGIN"), bind("", ""), execM(""), parse("", "SELECT 1/0"), bind("", ""), execM(""), syncM()),
		ext(parse("", "SELECT 1"), bind("", ""), execM(""), syncM()),
		ext(parse("", "ROLLBACK"), bind("", ""), execM(""), syncM()),
		ext(parse("", "COMMIT"), bind("", ""), execM(""), parse("", "SELECT 1/0"), bind("", ""), execM(""), syncM()),
	}},
	{"flush", script{
		{msgs: []pgproto3.FrontendMessage{parse("f", "SELECT $1::int"), describe('S', "f"), flush()}, n: 3},
		{msgs: []pgproto3.FrontendMessage{bind("", "f", "7"), execM(""), flush()}, n: 3},
		ext(syncM()),
		{msgs: []pgproto3.FrontendMessage{parse("", "BEGIN"), bind("", ""), execM(""), flush()}, n: 3},
		ext(syncM()), q("COMMIT"),
	}},
	{"unnamed statement survives a failed unit", script{
		ext(parse("", "SELECT $1::int"), describe('S', ""), syncM()),
		ext(bind("", "", "1"), execM(""), syncM()),
		ext(parse("x", "SELECT 1/$1::int"), bind("", "x", "0"), execM(""), syncM()),
		ext(bind("", "", "2"), execM(""), syncM()),
	}},
	{"deferred constraints are checked at commit", script{
		q(deferredSetup),
		q("BEGIN"), q("INSERT INTO child VALUES (1)"), q("COMMIT"), q("SELECT count(*) FROM child"),
		q("BEGIN"), q("INSERT INTO child VALUES (2)"), q("INSERT INTO parent VALUES (2)"), q("COMMIT"),
		q("BEGIN; INSERT INTO child VALUES (3); COMMIT; SELECT 1"),
		q("BEGIN"), q("SET CONSTRAINTS ALL IMMEDIATE"), q("INSERT INTO child VALUES (4)"), q("ROLLBACK"),
		q("BEGIN"), q("INSERT INTO child VALUES (5)"), q("SAVEPOINT a"), q("ROLLBACK TO a"), q("COMMIT"),
		q("SELECT count(*) FROM child"),
	}},
	{"deferred constraints of autocommit statements", script{
		q("CREATE TABLE plain (v int)"), q("INSERT INTO plain VALUES (1)"), q(deferredSetup),
		q("INSERT INTO child VALUES (1)"), q("SELECT count(*) FROM child"),
		q("INSERT INTO child VALUES (2); INSERT INTO parent VALUES (2)"),
		q("INSERT INTO child VALUES (3); SELECT 1"),
		run1("INSERT INTO child VALUES ($1)", "4"),
		ext(parse("", "INSERT INTO child VALUES (5)"), bind("", ""), execM(""),
			parse("", "SELECT 1"), bind("", ""), execM(""), syncM()),
		q("BEGIN"), q("INSERT INTO parent VALUES (6)"), q("COMMIT"),
		q("INSERT INTO child VALUES (7); BEGIN; INSERT INTO parent VALUES (7); COMMIT"),
		q("BEGIN; INSERT INTO child VALUES (8); COMMIT; INSERT INTO child VALUES (9)"),
		q("SELECT count(*) FROM child"),
		q("BEGIN"), q("SET CONSTRAINTS ALL IMMEDIATE"), q("COMMIT"),
		ext(parse("", "INSERT INTO child VALUES (11)"), bind("", ""), execM(""), syncM()),
		q("INSERT INTO child VALUES (12) -- a comment"), q("SELECT 1 +"), q("SELECT 1 -- c"), q(""), q(" ; "),
		q("ALTER TABLE child ADD COLUMN v int"), q("DROP TABLE child"),
	}},
	{"deferred triggers fire once", script{
		q(`CREATE TABLE fired (v int);
			CREATE FUNCTION note() RETURNS trigger LANGUAGE plpgsql AS $$BEGIN
				INSERT INTO fired VALUES (NEW.v); IF NEW.v < 0 THEN RAISE EXCEPTION 'negative %', NEW.v; END IF; RETURN NULL; END$$;
			CREATE TABLE watched (v int);
			CREATE CONSTRAINT TRIGGER w AFTER INSERT ON watched DEFERRABLE INITIALLY DEFERRED
				FOR EACH ROW EXECUTE FUNCTION note()`),
		q("INSERT INTO watched VALUES (1)"), q("SELECT count(*) FROM fired"),
		q("BEGIN"), q("INSERT INTO watched VALUES (2)"), q("COMMIT"),
		q("BEGIN"), q("COMMIT"), q("INSERT INTO watched VALUES (-3)"),
		q("SELECT v FROM fired ORDER BY v"),
		q("BEGIN"), q("SET CONSTRAINTS ALL IMMEDIATE"), q("INSERT INTO watched VALUES (4)"), q("COMMIT"),
		q("INSERT INTO watched VALUES (-5); INSERT INTO watched VALUES (5)"),
		q("SELECT v FROM fired ORDER BY v"),
	}},
	{"read-only transactions", script{
		q("BEGIN READ ONLY"), q("SELECT count(*) FROM items"), q("INSERT INTO items VALUES (10, 'ten')"), q("ROLLBACK"),
		q("INSERT INTO items VALUES (11, 'x')"), q("SHOW transaction_read_only"),
		q("START TRANSACTION READ ONLY"), q("SHOW transaction_read_only"), q("COMMIT"), q("SHOW transaction_read_only"),
		q("BEGIN"), q("INSERT INTO items VALUES (12, 'y')"), q("SET TRANSACTION READ ONLY"),
		q("DELETE FROM items"), q("COMMIT"),
		q("BEGIN READ ONLY"), q("COMMIT AND CHAIN"), q("INSERT INTO items VALUES (13, 'z')"), q("ROLLBACK AND CHAIN"),
		q("SHOW transaction_read_only"), q("ROLLBACK"),
		q("BEGIN READ WRITE"), q("INSERT INTO items VALUES (14, 'w')"), q("COMMIT"),
		q("SET TRANSACTION READ ONLY; INSERT INTO items VALUES (15, 'v')"),
		q("SET TRANSACTION READ ONLY; COMMIT AND CHAIN"), q("SHOW transaction_read_only"),
		run1("BEGIN READ ONLY"), run1("UPDATE items SET name = 'u'"), run1("ROLLBACK"),
		q(countItems),
	}},
	{"statements that need a transaction block", script{
		q("DECLARE c CURSOR FOR SELECT 1"), q("DECLARE h CURSOR WITH HOLD FOR SELECT 1"), q("CLOSE h"),
		q("LOCK TABLE items"), q("LOCK items IN SHARE MODE"),
		q("SET LOCAL search_path = nowhere"), q("SHOW search_path"),
		q("SET CONSTRAINTS ALL IMMEDIATE"),
		run1("DECLARE c2 CURSOR FOR SELECT 2"), run1("LOCK TABLE items"),
		q("BEGIN"), q("DECLARE c CURSOR FOR SELECT 1"), q("FETCH c"), q("LOCK TABLE items"),
		q("SET LOCAL work_mem = '8MB'"), q("SET CONSTRAINTS ALL DEFERRED"), q("ROLLBACK"),
		q("SELECT 1; LOCK TABLE items"),
	}},
	{"cursors end with the transaction", script{
		q("BEGIN"), q(`DECLARE c CURSOR FOR SELECT id FROM items ORDER BY id`), q(`DECLARE "Big" SCROLL CURSOR FOR SELECT 1`),
		q("DECLARE h CURSOR WITH HOLD FOR SELECT id FROM items ORDER BY id"), q("FETCH c"), q("COMMIT"),
		q("FETCH c"), q(`FETCH "Big"`), q("FETCH h"),
		q("BEGIN"), q("DECLARE c CURSOR FOR SELECT 1"), q("COMMIT AND CHAIN"), q("FETCH c"), q("ROLLBACK"),
		q("BEGIN"), q("DECLARE c CURSOR FOR SELECT 1"), q("ROLLBACK"), q("FETCH c"),
		q("DECLARE c CURSOR FOR SELECT 1; FETCH c"), q("FETCH c"),
		q("BEGIN; DECLARE c CURSOR FOR SELECT 1; COMMIT; FETCH c"),
		q("CLOSE h"), q("DROP TABLE items"),
	}},
	{"settings and notices", script{
		q("SET application_name = 'diff'"), q("SHOW application_name"),
		q("BEGIN"), q("SET application_name = 'inner'"), q("SELECT 1/0"), q("ROLLBACK"), q("SHOW application_name"),
		q("SET TimeZone = 'UTC'; SELECT 1/0"), q("SHOW TimeZone"),
		q("DO $$BEGIN RAISE NOTICE 'hello %', 1; END$$"),
	}},
	{"copy", script{
		{msgs: []pgproto3.FrontendMessage{&pgproto3.Query{String: "COPY items FROM STDIN"},
			&pgproto3.CopyData{Data: []byte("40\tforty\n")}, &pgproto3.CopyDone{}}},
		{msgs: []pgproto3.FrontendMessage{&pgproto3.Query{String: "COPY items FROM STDIN"},
			&pgproto3.CopyData{Data: []byte("1\tdup\n")}, &pgproto3.CopyDone{}}},
		q("COPY (SELECT id FROM items ORDER BY id) TO STDOUT"),
		{msgs: []pgproto3.FrontendMessage{&pgproto3.Query{String: "BEGIN; COPY items FROM STDIN"},
			&pgproto3.CopyData{Data: []byte("41\tx\n")}, &pgproto3.CopyFail{Message: "no"}}},
		q("ROLLBACK"), q(countItems),
	}},
	{"function call", script{
		ext(&pgproto3.FunctionCall{Function: 1397, ArgFormatCodes: []uint16{0}, Arguments: [][]byte{[]byte("-5")}}),
		ext(&pgproto3.FunctionCall{Function: 1397, ArgFormatCodes: []uint16{0}, Arguments: [][]byte{[]byte("x")}}),
		q("BEGIN"), ext(&pgproto3.FunctionCall{Function: 1397, Arguments: [][]byte{[]byte("x")}}), q("COMMIT"),
	}},
	{"copy failing outside a transaction", script{
		{msgs: []pgproto3.FrontendMessage{&pgproto3.Query{String: "INSERT INTO items VALUES (50, 'a'); COPY items FROM STDIN"},
			&pgproto3.CopyData{Data: []byte("51\tb\n")}, &pgproto3.CopyFail{Message: "changed my mind"}}},
		{msgs: []pgproto3.FrontendMessage{&pgproto3.Query{String: "COPY items FROM STDIN"},
			&pgproto3.CopyData{Data: []byte("52\tc\nnot a number\tx\n")}, &pgproto3.CopyDone{}}},
		q(countItems),
	}},
	{"extended copy as libpq sends it", script{
		{msgs: []pgproto3.FrontendMessage{parse("", "COPY items FROM STDIN"), bind("", ""), execM(""), syncM(),
			&pgproto3.CopyData{Data: []byte("60\tsixty\n")}, &pgproto3.CopyDone{}, syncM()}, rfqs: 1},
		{msgs: []pgproto3.FrontendMessage{parse("", "COPY nosuchtable FROM STDIN"), bind("", ""), execM(""), syncM()}},
		{msgs: []pgproto3.FrontendMessage{parse("", "COPY items FROM STDIN"), bind("", ""), execM(""), syncM(),
			&pgproto3.CopyData{Data: []byte("61\tx\n1\tdup\n")}, &pgproto3.CopyDone{}, syncM()}, rfqs: 1},
		q("BEGIN"),
		{msgs: []pgproto3.FrontendMessage{parse("c", "COPY items FROM STDIN"), bind("", "c"), execM(""), syncM(),
			&pgproto3.CopyData{Data: []byte("62\ty\n")}, &pgproto3.CopyFail{Message: "no"}, syncM()}, rfqs: 1},
		q("ROLLBACK"), q(countItems),
	}},
	{"cursors WITH HOLD are materialised at commit", script{
		// A scrollable cursor keeps its position and reads no table after COMMIT.
		q("BEGIN"), q("DECLARE h SCROLL CURSOR WITH HOLD FOR SELECT id, name FROM items ORDER BY id"),
		q("FETCH 2 FROM h"), q("COMMIT"),
		q("SELECT name, is_holdable, is_binary, is_scrollable FROM pg_cursors ORDER BY name"),
		q("FETCH NEXT FROM h"), q("FETCH PRIOR FROM h"), q("FETCH ABSOLUTE 1 FROM h"),
		q("ALTER TABLE items ADD COLUMN extra int"), q("DELETE FROM items WHERE id = 3"), q("FETCH ALL FROM h"),
		q("FETCH BACKWARD 2 FROM h"), q("CLOSE h"),
		// One that cannot scroll back goes on from where it was; one fetched to its
		// end stays there; one not fetched yet starts at its first row.
		q("BEGIN"), q("DECLARE n NO SCROLL CURSOR WITH HOLD FOR SELECT id FROM items ORDER BY id"), q("FETCH 1 FROM n"),
		q(`DECLARE "End" SCROLL CURSOR WITH HOLD FOR SELECT id FROM items ORDER BY id`), q(`FETCH ALL FROM "End"`),
		q("DECLARE f CURSOR WITH HOLD FOR SELECT g, g * 2 AS twice FROM generate_series(1, 4) g"),
		q("COMMIT"), q("FETCH ALL FROM n"), q("FETCH BACKWARD 1 FROM n"), q(`FETCH PRIOR FROM "End"`), q("FETCH 3 FROM f"),
		q("DROP TABLE items"),
		// Autocommit, in both protocols; a query string's implicit transaction.
		q("CREATE TABLE t (v int)"), q("INSERT INTO t VALUES (1), (2), (3)"),
		q("DECLARE a CURSOR WITH HOLD FOR SELECT v FROM t ORDER BY v"), q("TRUNCATE t"), q("FETCH 2 FROM a"),
		run1("DECLARE e CURSOR WITH HOLD FOR SELECT v, 'x' AS s FROM generate_series(7, 9) v"), q("FETCH ALL FROM e"),
		q("DECLARE s CURSOR WITH HOLD FOR SELECT 5 AS five; FETCH s; SELECT 1"), q("FETCH s"),
		q("BEGIN; DECLARE i CURSOR WITH HOLD FOR SELECT 6 AS six; COMMIT; FETCH i"),
		q("SELECT count(*) FROM pg_cursors"), q("CLOSE ALL"),
		// The query's error fails the COMMIT, which rolls the block back.
		q("INSERT INTO t VALUES (1), (0)"),
		q("BEGIN"), q("INSERT INTO t VALUES (5)"), q("DECLARE z CURSOR WITH HOLD FOR SELECT 1 / v FROM t ORDER BY v DESC"),
		q("FETCH 1 FROM z"), q("COMMIT"), q("FETCH z"), q("SELECT count(*) FROM t"),
		q("DECLARE z CURSOR WITH HOLD FOR SELECT 1 / v FROM t"), q("FETCH z"),
		// A rollback closes it; a later block's rollback leaves one committed before.
		q("BEGIN"), q("DECLARE r CURSOR WITH HOLD FOR SELECT 1"), q("ROLLBACK"), q("FETCH r"),
		q("DECLARE k CURSOR WITH HOLD FOR SELECT v FROM t WHERE v > 0"), q("BEGIN"), q("FETCH k"), q("ROLLBACK"), q("FETCH k"),
		q("DROP TABLE t"),
		// Materialised before the commit's ON COMMIT DELETE ROWS; BINARY kept.
		q("CREATE TEMP TABLE d (v int) ON COMMIT DELETE ROWS"),
		q("BEGIN"), q("INSERT INTO d VALUES (4), (5)"), q("DECLARE dh CURSOR WITH HOLD FOR SELECT v FROM d ORDER BY v"),
		q("DECLARE b BINARY CURSOR WITH HOLD FOR SELECT 42 AS n, 'x'::text AS s"), q("COMMIT"),
		q("FETCH ALL FROM dh"), q("FETCH b"), q("SELECT count(*) FROM d"), q("CLOSE ALL"), q("DROP TABLE d"),
		// An extended-protocol unit: the cursors of one that fails are gone.
		ext(parse("", "DECLARE x1 CURSOR WITH HOLD FOR SELECT 1 AS one"), bind("", ""), execM(""),
			parse("", "DECLARE x2 SCROLL CURSOR WITH HOLD FOR SELECT 2 AS two"), bind("", ""), execM(""), syncM()),
		q("FETCH x1"), q("FETCH x2"), q("FETCH PRIOR FROM x2"),
		ext(parse("", "DECLARE x3 CURSOR WITH HOLD FOR SELECT 3 AS three"), bind("", ""), execM(""),
			parse("", "SELECT 1 / 0"), bind("", ""), execM(""), syncM()),
		q("FETCH x3"), q("SELECT name FROM pg_cursors ORDER BY name"), q("CLOSE ALL"),
	}},
	{"temporary tables and cursors", script{
		q("CREATE TEMP TABLE tt (v int)"), q("INSERT INTO tt VALUES (1)"), q("SELECT * FROM tt"),
		q("BEGIN"), q("DECLARE cur CURSOR FOR SELECT id FROM items ORDER BY id"), q("FETCH 2 FROM cur"),
		q("CLOSE cur"), q("COMMIT"),
	}},
}

// Every scripted sequence gets the same replies through the proxy in tx mode as from
// a plain server.
func TestTxMatchesPlainServer(t *testing.T) {
	t.Parallel()
	env := newDiffEnv(t)
	for _, tc := range diffCases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			env.compare(t, tc.sc)
		})
	}
}

// A lease learns at its start that the template has deferrable constraints: the
// deferred constraints of autocommit statements are checked without any DDL in the
// lease.
func TestTxDeferredFromTemplate(t *testing.T) {
	t.Parallel()
	p := newTestProvider(t)
	dbURL, tpl := testpg.NewDatabase(t)
	testpg.Exec(t, dbURL, deferredSetup)
	p.templates["app"] = tpl
	env := &diffEnv{s: startProxy(t, Config{Provider: p, Logger: nopLogger()}), p: p, tpl: tpl}
	env.compare(t, script{
		q("INSERT INTO child VALUES (1)"), run1("INSERT INTO child VALUES ($1)", "2"),
		q("INSERT INTO child VALUES (3); INSERT INTO parent VALUES (3)"),
		q("BEGIN"), q("INSERT INTO child VALUES (4)"), q("COMMIT"),
		q("BEGIN"), q("INSERT INTO parent VALUES (5)"), q("COMMIT"), q("INSERT INTO child VALUES (6)"),
		q("SELECT count(*) FROM child"),
	})
}
