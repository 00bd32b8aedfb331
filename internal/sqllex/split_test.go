package sqllex

import (
	"slices"
	"strings"
	"testing"
)

type splitCase struct {
	name  string
	sql   string
	want  []string // the pieces' texts
	kinds []Kind   // when not nil, the pieces' kinds
}

var splitCases = []splitCase{
	{"empty", "", []string{""}, []Kind{Empty}},
	{"semicolon", ";", []string{"", ""}, []Kind{Empty, Empty}},
	{"one", "SELECT 1", []string{"SELECT 1"}, []Kind{Other}},
	{"trailing semicolon", "SELECT 1;", []string{"SELECT 1", ""}, []Kind{Other, Empty}},
	{"trailing newline", "COMMIT;\n", []string{"COMMIT", "\n"}, []Kind{Commit, Empty}},
	{"empty statements", "SELECT 1;;SELECT 2; /* c */ ;",
		[]string{"SELECT 1", "", "SELECT 2", " /* c */ ", ""}, []Kind{Other, Empty, Other, Empty, Empty}},
	{"transaction", "BEGIN; INSERT INTO t VALUES (1); COMMIT;",
		[]string{"BEGIN", " INSERT INTO t VALUES (1)", " COMMIT", ""}, []Kind{Begin, Other, Commit, Empty}},
	{"string with semicolon", "SELECT 1; BEGIN; SELECT 'a;b'; COMMIT",
		[]string{"SELECT 1", " BEGIN", " SELECT 'a;b'", " COMMIT"}, []Kind{Other, Begin, Other, Commit}},
	{"crlf", "BEGIN;\r\nCOMMIT;\r\n", []string{"BEGIN", "\r\nCOMMIT", "\r\n"}, []Kind{Begin, Commit, Empty}},
	{"modes and comments", "begin /* ; */ isolation level -- ;\n serializable; end",
		[]string{"begin /* ; */ isolation level -- ;\n serializable", " end"}, []Kind{Begin, Commit}},

	// Comments.
	{"nested comment", "/* a /* b; */ c; */ SELECT 1; SELECT 2",
		[]string{"/* a /* b; */ c; */ SELECT 1", " SELECT 2"}, nil},
	{"comment star slash star", "/*/ ; */ SELECT 1 /**/; /***/ SELECT 2",
		[]string{"/*/ ; */ SELECT 1 /**/", " /***/ SELECT 2"}, nil},
	{"line comment", "SELECT 1 -- ; not a split\n; SELECT 2",
		[]string{"SELECT 1 -- ; not a split\n", " SELECT 2"}, nil},
	{"line comment ends at CR", "SELECT 1 -- x\r; SELECT 2", []string{"SELECT 1 -- x\r", " SELECT 2"}, nil},
	{"only a comment", "-- BEGIN; COMMIT", []string{"-- BEGIN; COMMIT"}, []Kind{Empty}},
	{"operator before comment", "SELECT 1 +/* ; */ 2; SELECT 3 *--;\n 2; COMMIT",
		[]string{"SELECT 1 +/* ; */ 2", " SELECT 3 *--;\n 2", " COMMIT"}, []Kind{Other, Other, Commit}},

	// Strings.
	{"doubled quote", "SELECT 'it''s; fine'; SELECT 2", []string{"SELECT 'it''s; fine'", " SELECT 2"}, nil},
	{"backslash is literal", `SELECT '\'; SELECT 2`, []string{`SELECT '\'`, " SELECT 2"}, nil},
	{"E string escape", `SELECT E'\';'; ROLLBACK`, []string{`SELECT E'\';'`, " ROLLBACK"}, []Kind{Other, Rollback}},
	{"e string escaped backslash", `SELECT e'\\'; SELECT 2`, []string{`SELECT e'\\'`, " SELECT 2"}, nil},
	{"E string doubled quote", `SELECT E'a'';'; SELECT 2`, []string{`SELECT E'a'';'`, " SELECT 2"}, nil},
	{"E prefix only at token start", `SELECT somee'\'; SELECT 2`, []string{`SELECT somee'\'`, " SELECT 2"}, nil},
	{"U& string", `SELECT U&'\0041;'; SELECT U&'\'; SELECT 2`,
		[]string{`SELECT U&'\0041;'`, ` SELECT U&'\'`, " SELECT 2"}, nil},
	{"bit strings", `SELECT B'01', X'1F', N'x;\'; SELECT 2`, []string{`SELECT B'01', X'1F', N'x;\'`, " SELECT 2"}, nil},
	{"continuation", "SELECT 'a' -- c;\n 'b;'; SELECT 2", []string{"SELECT 'a' -- c;\n 'b;'", " SELECT 2"}, nil},
	// A continued E string stays an E string: \' escapes in its second segment.
	{"E continuation", "SELECT E'a'\n'\\';'; SELECT 2", []string{"SELECT E'a'\n'\\';'", " SELECT 2"}, nil},
	{"standard continuation", "SELECT 'a'\n'\\'; SELECT 2", []string{"SELECT 'a'\n'\\'", " SELECT 2"}, nil},
	{"no continuation on one line", `SELECT E'a' '\'; SELECT 2'`, []string{`SELECT E'a' '\'`, ` SELECT 2'`}, nil},
	{"non-ASCII", "SELECT 'é;'; SELECT ß; SELECT \"ß;\"", []string{"SELECT 'é;'", " SELECT ß", ` SELECT "ß;"`}, nil},

	// Identifiers.
	{"quoted identifier", `SELECT 1 AS "a;b"; SELECT 1 AS "x"";y"; COMMIT`,
		[]string{`SELECT 1 AS "a;b"`, ` SELECT 1 AS "x"";y"`, " COMMIT"}, []Kind{Other, Other, Commit}},
	{"U& identifier", `SELECT 1 AS U&"\0041;"; SELECT 2`, []string{`SELECT 1 AS U&"\0041;"`, " SELECT 2"}, nil},
	{"savepoint with semicolon", `SAVEPOINT "a;b"; RELEASE "a;b"`,
		[]string{`SAVEPOINT "a;b"`, ` RELEASE "a;b"`}, []Kind{Savepoint, Release}},

	// Dollar quotes.
	{"dollar quote", "SELECT $$a;b$$; SELECT 2", []string{"SELECT $$a;b$$", " SELECT 2"}, nil},
	{"dollar tag", "SELECT $tag$ $$; $tag$; SELECT 2", []string{"SELECT $tag$ $$; $tag$", " SELECT 2"}, nil},
	{"dollar tag prefix", "SELECT $a$ $ab$; $a$; SELECT 2", []string{"SELECT $a$ $ab$; $a$", " SELECT 2"}, nil},
	{"dollar tag with digits", "SELECT $a1$;$a1$; SELECT 2", []string{"SELECT $a1$;$a1$", " SELECT 2"}, nil},
	{"dollar tag is case-sensitive", "SELECT $A$ $a$; $A$; SELECT 2", []string{"SELECT $A$ $a$; $A$", " SELECT 2"}, nil},
	{"parameter", "SELECT $1; SELECT $2", []string{"SELECT $1", " SELECT $2"}, nil},
	{"dollar in identifier", "SELECT a$b$; SELECT $b$;$b$", []string{"SELECT a$b$", " SELECT $b$;$b$"}, nil},
	{"function body", "CREATE FUNCTION f() RETURNS int AS $$ BEGIN; $$ LANGUAGE sql; BEGIN; COMMIT",
		[]string{"CREATE FUNCTION f() RETURNS int AS $$ BEGIN; $$ LANGUAGE sql", " BEGIN", " COMMIT"},
		[]Kind{Other, Begin, Commit}},
	{"DO block", "DO $do$BEGIN PERFORM 1; COMMIT; END$do$; COMMIT", []string{"DO $do$BEGIN PERFORM 1; COMMIT; END$do$", " COMMIT"}, nil},

	// Parentheses: CREATE RULE … DO (a; b).
	{"rule", "CREATE RULE r AS ON INSERT TO t DO ALSO (INSERT INTO u VALUES (1); INSERT INTO u VALUES (2)); SELECT 1",
		[]string{"CREATE RULE r AS ON INSERT TO t DO ALSO (INSERT INTO u VALUES (1); INSERT INTO u VALUES (2))", " SELECT 1"}, nil},
	{"unbalanced close", "SELECT 1); SELECT 2", []string{"SELECT 1)", " SELECT 2"}, nil},

	// BEGIN ATOMIC bodies.
	{"atomic", "CREATE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 1; SELECT 2; END; SELECT f()",
		[]string{"CREATE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 1; SELECT 2; END", " SELECT f()"}, nil},
	{"atomic case", "CREATE OR REPLACE FUNCTION f(x int) RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT CASE WHEN x > 0 THEN 1 ELSE 0 END; END; COMMIT",
		[]string{"CREATE OR REPLACE FUNCTION f(x int) RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT CASE WHEN x > 0 THEN 1 ELSE 0 END; END", " COMMIT"},
		[]Kind{Other, Commit}},
	{"atomic nested case", "CREATE FUNCTION f(x int) RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT CASE WHEN x > 0 THEN CASE x WHEN 1 THEN 1 END END; SELECT 2; END; SELECT 3",
		[]string{"CREATE FUNCTION f(x int) RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT CASE WHEN x > 0 THEN CASE x WHEN 1 THEN 1 END END; SELECT 2; END", " SELECT 3"}, nil},
	{"atomic case in parentheses", "CREATE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT (CASE WHEN true THEN 1 END); END; SELECT 2",
		[]string{"CREATE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT (CASE WHEN true THEN 1 END); END", " SELECT 2"}, nil},
	{"atomic procedure", "create procedure p() language sql begin /* c */ atomic insert into t values (1); end; commit",
		[]string{"create procedure p() language sql begin /* c */ atomic insert into t values (1); end", " commit"}, []Kind{Other, Commit}},
	{"atomic or replace procedure", "CREATE OR REPLACE PROCEDURE p() LANGUAGE sql BEGIN ATOMIC SELECT 1; END; BEGIN; SELECT 1; END;",
		[]string{"CREATE OR REPLACE PROCEDURE p() LANGUAGE sql BEGIN ATOMIC SELECT 1; END", " BEGIN", " SELECT 1", " END", ""},
		[]Kind{Other, Begin, Other, Commit, Empty}},
	// psql counts every BEGIN in a CREATE FUNCTION; only BEGIN ATOMIC opens a body.
	{"function named begin", "CREATE FUNCTION begin() RETURNS int LANGUAGE sql RETURN 1; BEGIN; COMMIT",
		[]string{"CREATE FUNCTION begin() RETURNS int LANGUAGE sql RETURN 1", " BEGIN", " COMMIT"}, []Kind{Other, Begin, Commit}},
	{"not a routine", "CREATE TABLE begin (atomic int); SELECT 1", []string{"CREATE TABLE begin (atomic int)", " SELECT 1"}, nil},
	{"quoted begin", `CREATE FUNCTION f() RETURNS int LANGUAGE sql "BEGIN" ATOMIC; SELECT 1`,
		[]string{`CREATE FUNCTION f() RETURNS int LANGUAGE sql "BEGIN" ATOMIC`, " SELECT 1"}, nil},

	// Unterminated: the rest is one statement, for the server to reject.
	{"unterminated string", "SELECT 'abc; COMMIT", []string{"SELECT 'abc; COMMIT"}, []Kind{Other}},
	{"unterminated E string", `SELECT E'abc\'; COMMIT`, []string{`SELECT E'abc\'; COMMIT`}, nil},
	{"unterminated identifier", `SELECT "abc; COMMIT`, []string{`SELECT "abc; COMMIT`}, nil},
	{"unterminated comment", "SELECT /* abc; COMMIT", []string{"SELECT /* abc; COMMIT"}, nil},
	{"unterminated nested comment", "SELECT /* a /* b */; COMMIT", []string{"SELECT /* a /* b */; COMMIT"}, nil},
	{"unterminated dollar quote", "SELECT $x$abc; COMMIT $X$", []string{"SELECT $x$abc; COMMIT $X$"}, nil},
	{"unterminated parenthesis", "SELECT (1; COMMIT", []string{"SELECT (1; COMMIT"}, nil},
	{"unterminated atomic", "CREATE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 1; COMMIT",
		[]string{"CREATE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 1; COMMIT"}, nil},
	{"unterminated after statements", "BEGIN; SELECT 'x", []string{"BEGIN", " SELECT 'x"}, []Kind{Begin, Other}},

	// Numbers: trailing junk is part of the number (PostgreSQL 15 rejects it), so
	// 1e'…' holds no E string.
	{"number junk", `SELECT 1e'\'; SELECT 2`, []string{`SELECT 1e'\'`, " SELECT 2"}, nil},
	{"numbers", "SELECT 1.5e3, .5, 1..2, 0x1F; SELECT 2", []string{"SELECT 1.5e3, .5, 1..2, 0x1F", " SELECT 2"}, nil},
}

func TestSplit(t *testing.T) {
	for _, c := range splitCases {
		t.Run(c.name, func(t *testing.T) {
			got := Split(c.sql)
			checkPieces(t, c.sql, got)
			texts := make([]string, len(got))
			kinds := make([]Kind, len(got))
			for i, st := range got {
				texts[i], kinds[i] = st.Text, st.Kind
			}
			if !slices.Equal(texts, c.want) {
				t.Errorf("Split(%q)\n got %q\nwant %q", c.sql, texts, c.want)
			}
			if c.kinds != nil && !slices.Equal(kinds, c.kinds) {
				t.Errorf("Split(%q) kinds %v, want %v", c.sql, kinds, c.kinds)
			}
		})
	}
}

// checkPieces checks what holds for every result of Split: the pieces cover sql,
// separated by single ';', and each is classified as Classify classifies it alone.
func checkPieces(t *testing.T, sql string, pieces []Statement) {
	t.Helper()
	if len(pieces) == 0 {
		t.Fatalf("Split(%q) returned nothing", sql)
	}
	texts := make([]string, len(pieces))
	for i, st := range pieces {
		texts[i] = st.Text
		if st.Start < 0 || st.End > len(sql) || st.Start > st.End || sql[st.Start:st.End] != st.Text {
			t.Fatalf("Split(%q)[%d]: offsets [%d:%d] do not hold %q", sql, i, st.Start, st.End, st.Text)
		}
		if i == 0 && st.Start != 0 || i > 0 && (st.Start != pieces[i-1].End+1 || sql[pieces[i-1].End] != ';') {
			t.Fatalf("Split(%q)[%d] starts at %d, not after a ';'", sql, i, st.Start)
		}
		alone := Classify(st.Text)
		alone.Start, alone.End = st.Start, st.End
		if alone != st {
			t.Fatalf("Split(%q)[%d] = %+v, but Classify(%q) = %+v", sql, i, st, st.Text, alone)
		}
	}
	if last := pieces[len(pieces)-1]; last.End != len(sql) {
		t.Fatalf("Split(%q) ends at %d of %d", sql, last.End, len(sql))
	}
	if j := strings.Join(texts, ";"); j != sql {
		t.Fatalf("Split(%q) pieces join to %q", sql, j)
	}
}

// TestSplitPieceIsOneStatement: a piece split again is the same single piece.
func TestSplitPieceIsOneStatement(t *testing.T) {
	for _, c := range splitCases {
		for _, st := range Split(c.sql) {
			if again := Split(st.Text); len(again) != 1 || again[0].Text != st.Text {
				t.Errorf("Split(%q) splits piece %q of %q again: %d pieces", st.Text, st.Text, c.sql, len(again))
			}
		}
	}
}

// TestSplitSingleAllocation: Split allocates only its result.
func TestSplitSingleAllocation(t *testing.T) {
	for _, sql := range []string{
		"SELECT 1",
		"BEGIN; INSERT INTO t VALUES (1); COMMIT;",
		"SELECT $$a;b$$; SELECT 'x;y'; SELECT \"z;\"",
	} {
		if n := testing.AllocsPerRun(100, func() { Split(sql) }); n != 1 {
			t.Errorf("Split(%q): %v allocations, want 1", sql, n)
		}
	}
}
