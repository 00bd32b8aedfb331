package sqllex

import (
	"context"
	"fmt"
	"net"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/pgtestproxy/pgtestproxy/internal/testpg"
)

func TestMain(m *testing.M) { os.Exit(testpg.Main(m)) }

// reply is one message a server sent in answer to a simple Query.
type reply struct {
	typ  byte   // 'C' CommandComplete, 'I' EmptyQueryResponse, 'E' error, 'N' notice, 'A' notification
	tag  string // CommandComplete tag, a notification's channel
	code string // SQLSTATE of an error or notice
	msg  string
}

func (r reply) String() string {
	switch r.typ {
	case 'C':
		return "C " + r.tag
	case 'I':
		return "I"
	case 'A':
		return fmt.Sprintf("A %s %q", r.tag, r.msg)
	}
	return fmt.Sprintf("%c %s %s", r.typ, r.code, r.msg)
}

// wire is a raw protocol connection to the test server: what a proxy's client sees.
type wire struct {
	conn net.Conn
	fe   *pgproto3.Frontend
}

// dial connects to a database of its own on the test server, with the fixture objects
// the cases name.
func dial(t *testing.T) *wire {
	t.Helper()
	if testing.Short() {
		t.Skip("needs a PostgreSQL server")
	}
	url, _ := testpg.NewDatabase(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	pc, err := pgconn.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	hc, err := pc.Hijack()
	if err != nil {
		t.Fatal(err)
	}
	w := &wire{conn: hc.Conn, fe: hc.Frontend}
	t.Cleanup(func() { hc.Conn.Close() })
	w.mustQuery(t, `
		CREATE TABLE t (x int PRIMARY KEY);
		CREATE INDEX i ON t (x);
		CREATE TABLE u (x int);
		CREATE TABLE p (x int) PARTITION BY RANGE (x);
		CREATE TABLE c PARTITION OF p FOR VALUES FROM (0) TO (10);
		CREATE MATERIALIZED VIEW mv AS SELECT 1 AS x;
		CREATE UNIQUE INDEX mv_x ON mv (x);
		CREATE TYPE e AS ENUM ('a')`)
	// A subscription with a replication slot name, which a database cannot be dropped with.
	w.mustQuery(t, "CREATE SUBSCRIPTION s CONNECTION 'dbname=none' PUBLICATION p WITH (connect = false)")
	t.Cleanup(func() {
		w.query(t, "ROLLBACK")
		w.mustQuery(t, "ALTER SUBSCRIPTION s SET (slot_name = NONE)")
		w.mustQuery(t, "DROP SUBSCRIPTION s")
	})
	return w
}

// query runs sql as one simple Query and returns the replies up to ReadyForQuery,
// and the transaction status it reports.
func (w *wire) query(t *testing.T, sql string) ([]reply, byte) {
	t.Helper()
	rs, _, st := w.rows(t, sql)
	return rs, st
}

// rows runs sql as one simple Query and returns the replies, the rows' text values
// and the transaction status.
func (w *wire) rows(t *testing.T, sql string) ([]reply, [][]string, byte) {
	t.Helper()
	if err := w.conn.SetDeadline(time.Now().Add(30 * time.Second)); err != nil {
		t.Fatal(err)
	}
	w.fe.Send(&pgproto3.Query{String: sql})
	if err := w.fe.Flush(); err != nil {
		t.Fatal(err)
	}
	var out []reply
	var rows [][]string
	for {
		msg, err := w.fe.Receive()
		if err != nil {
			t.Fatalf("%q: %v", sql, err)
		}
		switch m := msg.(type) {
		case *pgproto3.DataRow:
			row := make([]string, len(m.Values))
			for i, v := range m.Values {
				row[i] = string(v)
			}
			rows = append(rows, row)
		case *pgproto3.CommandComplete:
			out = append(out, reply{typ: 'C', tag: string(m.CommandTag)})
		case *pgproto3.EmptyQueryResponse:
			out = append(out, reply{typ: 'I'})
		case *pgproto3.ErrorResponse:
			out = append(out, reply{typ: 'E', code: m.Code, msg: m.Message})
		case *pgproto3.NoticeResponse:
			out = append(out, reply{typ: 'N', code: m.Code, msg: m.Message})
		case *pgproto3.NotificationResponse:
			out = append(out, reply{typ: 'A', tag: m.Channel, msg: m.Payload})
		case *pgproto3.ReadyForQuery:
			return out, rows, m.TxStatus
		}
	}
}

// mustQuery runs sql and fails the test if the server reports an error.
func (w *wire) mustQuery(t *testing.T, sql string) []reply {
	t.Helper()
	rs, _ := w.query(t, sql)
	if e, ok := errorOf(rs); ok {
		t.Fatalf("%q: %v", sql, e)
	}
	return rs
}

func (w *wire) show(t *testing.T, name string) string {
	t.Helper()
	rs, rows, _ := w.rows(t, "SHOW "+name)
	if e, ok := errorOf(rs); ok || len(rows) != 1 {
		t.Fatalf("SHOW %s: %v %q", name, e, rows)
	}
	return rows[0][0]
}

// results keeps the CommandComplete, EmptyQueryResponse and error replies: what
// tells statements apart.
func results(rs []reply) []reply {
	var out []reply
	for _, r := range rs {
		if r.typ != 'N' && r.typ != 'A' {
			out = append(out, r)
		}
	}
	return out
}

func errorOf(rs []reply) (reply, bool) {
	for _, r := range rs {
		if r.typ == 'E' {
			return r, true
		}
	}
	return reply{}, false
}

// checkModes compares the server's transaction settings (or their defaults) with m.
func (w *wire) checkModes(t *testing.T, m TxModes, defaults bool) {
	t.Helper()
	prefix := ""
	if defaults {
		prefix = "default_"
	}
	iso := "read committed"
	if m.Isolation != IsolationUnset {
		iso = strings.ToLower(m.Isolation.String())
	}
	onOff := func(v Tristate) string {
		if v == Yes {
			return "on"
		}
		return "off"
	}
	for name, want := range map[string]string{
		"transaction_isolation":  iso,
		"transaction_read_only":  onOff(m.ReadOnly),
		"transaction_deferrable": onOff(m.Deferrable),
	} {
		if got := w.show(t, prefix+name); got != want {
			t.Errorf("%s%s = %q, want %q (modes %q)", prefix, name, got, want, m)
		}
	}
}

// TestServerClassify runs every classification case on PostgreSQL where it belongs
// and checks that the server agrees: the tag it completes a transaction-control
// statement with, the modes it applies, the savepoint a name refers to, the GID it
// looks up, the statements it refuses inside a transaction block (and the name it
// gives them), the syntax errors, and that ordinary statements run in one.
func TestServerClassify(t *testing.T) {
	w := dial(t)
	for _, c := range classifyCases {
		if c.srv == srvSkip {
			continue
		}
		t.Run(c.sql, func(t *testing.T) {
			w.query(t, "ROLLBACK")
			defer w.query(t, "ROLLBACK")
			st := Classify(c.sql)
			switch {
			case c.srv == srvSyntax || c.srv == srvError:
				w.mustQuery(t, "BEGIN")
				rs, _ := w.query(t, c.sql)
				e, ok := errorOf(rs)
				if !ok || c.srv == srvSyntax && e.code != "42601" {
					t.Fatalf("%q: the server answers %v, want a syntax error", c.sql, rs)
				}
			case st.Kind == Empty:
				if rs, _ := w.query(t, c.sql); len(rs) != 1 || rs[0].typ != 'I' {
					t.Fatalf("%q: the server answers %v, want EmptyQueryResponse", c.sql, rs)
				}
			case st.Kind == Other:
				w.mustQuery(t, "BEGIN")
				w.mustQuery(t, c.sql)
			default:
				checkServerKind(t, w, st)
			}
		})
	}
}

func checkServerKind(t *testing.T, w *wire, st Statement) {
	t.Helper()
	sql := st.Text
	completes := func(rs []reply, status byte, wantStatus byte) {
		t.Helper()
		if r := results(rs); len(r) != 1 || r[0].typ != 'C' || r[0].tag != st.Tag || status != wantStatus {
			t.Fatalf("%q: the server answers %v %c, want C %s %c", sql, rs, status, st.Tag, wantStatus)
		}
	}
	refuses := func(rs []reply, code, msg string) {
		t.Helper()
		if e, ok := errorOf(rs); !ok || e.code != code || e.msg != msg {
			t.Fatalf("%q: the server answers %v, want %s %q", sql, rs, code, msg)
		}
	}
	quoted := `"` + strings.ReplaceAll(st.Name.Name, `"`, `""`) + `"`
	switch st.Kind {
	case Begin:
		rs, status := w.query(t, sql)
		completes(rs, status, 'T')
		w.checkModes(t, st.Modes, false)
	case Commit, Rollback:
		w.mustQuery(t, "BEGIN")
		rs, status := w.query(t, sql)
		want := byte('I')
		if st.Chain {
			want = 'T'
		}
		completes(rs, status, want)
	case Savepoint:
		w.mustQuery(t, "BEGIN")
		rs, status := w.query(t, sql)
		completes(rs, status, 'T')
		w.mustQuery(t, "RELEASE SAVEPOINT "+quoted) // Name names the same savepoint
	case Release, RollbackTo:
		w.mustQuery(t, "BEGIN; SAVEPOINT "+quoted)
		rs, status := w.query(t, sql)
		completes(rs, status, 'T')
	case PrepareTransaction:
		w.mustQuery(t, "BEGIN")
		rs, status := w.query(t, sql)
		if e, ok := errorOf(rs); ok {
			if e.code != "55000" { // prepared transactions are disabled
				t.Fatalf("%q: %v", sql, e)
			}
			break
		}
		completes(rs, status, 'I')
		w.mustQuery(t, "ROLLBACK PREPARED '"+strings.ReplaceAll(st.Literal, "'", "''")+"'")
	case CommitPrepared, RollbackPrepared:
		rs, _ := w.query(t, sql)
		refuses(rs, "42704", `prepared transaction with identifier "`+st.Literal+`" does not exist`)
		w.mustQuery(t, "BEGIN")
		rs, _ = w.query(t, sql)
		refuses(rs, "25001", st.NoTxCommand+" cannot run inside a transaction block")
	case SetTransaction:
		w.mustQuery(t, "BEGIN")
		rs, status := w.query(t, sql)
		if st.Literal != "" { // a snapshot: not importable here, but not a syntax error
			if e, ok := errorOf(rs); !ok || e.code == "42601" {
				t.Fatalf("%q: the server answers %v", sql, rs)
			}
			break
		}
		completes(rs, status, 'T')
		w.checkModes(t, st.Modes, st.Session)
	case Listen, Unlisten, Notify:
		checkChannel(t, w, st, quoted, completes)
	case NoTxBlock:
		w.mustQuery(t, "BEGIN")
		rs, _ := w.query(t, sql)
		refuses(rs, "25001", st.NoTxCommand+" cannot run inside a transaction block")
	default:
		t.Fatalf("no server check for %v", st.Kind)
	}
}

// checkChannel runs LISTEN, UNLISTEN or NOTIFY in autocommit: the channel it listens
// on, stops listening on or notifies must be Name, a notification's payload Literal.
func checkChannel(t *testing.T, w *wire, st Statement, quoted string, completes func([]reply, byte, byte)) {
	t.Helper()
	defer w.mustQuery(t, "UNLISTEN *")
	channels := func() []string {
		_, rows, _ := w.rows(t, "SELECT pg_catalog.pg_listening_channels()")
		var out []string
		for _, r := range rows {
			out = append(out, r[0])
		}
		return out
	}
	switch {
	case st.Kind == Unlisten && st.Name.Name == "":
		w.mustQuery(t, "LISTEN a; LISTEN b")
	case st.Kind != Listen:
		w.mustQuery(t, "LISTEN "+quoted)
	}
	rs, status := w.query(t, st.Text)
	completes(rs, status, 'I')
	switch st.Kind {
	case Listen:
		if got := channels(); !slices.Equal(got, []string{st.Name.Name}) {
			t.Fatalf("%q: listening on %q, want %q", st.Text, got, st.Name.Name)
		}
	case Unlisten:
		if got := channels(); len(got) != 0 {
			t.Fatalf("%q: still listening on %q", st.Text, got)
		}
	case Notify:
		want := reply{typ: 'A', tag: st.Name.Name, msg: st.Literal}
		if !slices.Contains(rs, want) {
			t.Fatalf("%q: the server answers %v, want %v", st.Text, rs, want)
		}
	}
}

// serverSplitCases are query strings PostgreSQL runs without error, given the
// fixture of dial.
var serverSplitCases = []string{
	"",
	"/* only */ -- comments\n;;",
	"SELECT 1; BEGIN; SELECT 'a;b'; COMMIT",
	"BEGIN; INSERT INTO u VALUES (1); COMMIT;",
	"BEGIN ISOLATION LEVEL SERIALIZABLE, READ ONLY; SHOW transaction_isolation; COMMIT AND CHAIN; ROLLBACK",
	"BEGIN; SAVEPOINT \"a;b\"; RELEASE \"a;b\"; SAVEPOINT x; ROLLBACK TO x; END",
	"/* a /* b; */ c; */ SELECT 1; SHOW work_mem",
	"SELECT 1 -- ; \n; SELECT 2;;",
	"SELECT 1 +/* ; */ 2; SELECT 3 *--;\n 2",
	`SELECT E'\';'; SELECT 'it''s; fine', '\'; SELECT U&'\0041;', U&'\' UESCAPE '!'; VALUES (1)`,
	"SELECT B'01', X'1F', N'x;\\'; TABLE u",
	`SELECT 1 AS "a;b"; SELECT 1 AS "x"";y", 2 AS U&"\0041;"`,
	"SELECT $$a;b$$; SELECT $tag$ $$; $tag$; SELECT $a1$;$a1$, $A$ $a$; $A$",
	"SELECT 'a' -- c;\n 'b;'; SELECT E'a'\n'\\';'",
	"CREATE FUNCTION f1() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 1; SELECT CASE WHEN true THEN CASE 1 WHEN 1 THEN 2 END END; END; SELECT f1(); DROP FUNCTION f1",
	"CREATE OR REPLACE FUNCTION f2(x int) RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT (CASE WHEN x > 0 THEN 1 END); END; SELECT f2(1); DROP FUNCTION f2",
	"create procedure p1() language sql begin /* c */ atomic insert into u values (1); insert into u values (2); end; call p1(); drop procedure p1",
	"CREATE FUNCTION begin() RETURNS int LANGUAGE sql RETURN 1; BEGIN; SELECT begin(); COMMIT; DROP FUNCTION begin",
	"CREATE FUNCTION f3() RETURNS int AS $$ SELECT 1; $$ LANGUAGE sql; BEGIN; COMMIT; DROP FUNCTION f3",
	"CREATE RULE r AS ON INSERT TO u DO ALSO (INSERT INTO t VALUES (100); DELETE FROM t WHERE x = 100); DROP RULE r ON u",
	"DO $do$BEGIN PERFORM 1; END$do$; SELECT 1",
	"SELECT 'é;'; SELECT 1 AS ß",
	"SELECT 1.5e3, .5, 1., 0.e1; SELECT 2",
	"BEGIN;\r\nCOMMIT;\r\n",
}

// TestServerSplit sends each query string whole to one database and piece by piece
// to another: the server must complete the same statements with the same tags, send
// EmptyQueryResponse for a piece that is Empty, and the tags of transaction-control
// pieces must be theirs.
func TestServerSplit(t *testing.T) {
	whole, pieces := dial(t), dial(t)
	for _, sql := range serverSplitCases {
		t.Run(sql, func(t *testing.T) {
			want := results(whole.mustQuery(t, sql))
			var got []reply
			for _, st := range Split(sql) {
				rs := results(pieces.mustQuery(t, st.Text))
				if st.Kind == Empty {
					if len(rs) != 1 || rs[0].typ != 'I' {
						t.Errorf("piece %q is Empty, the server answers %v", st.Text, rs)
					}
					continue
				}
				if len(rs) != 1 || rs[0].typ != 'C' {
					t.Fatalf("piece %q is not one statement: %v", st.Text, rs)
				}
				if st.Tag != "" && rs[0].tag != st.Tag {
					t.Errorf("piece %q has tag %q, the server says %q", st.Text, st.Tag, rs[0].tag)
				}
				got = append(got, rs[0])
			}
			if len(got) == 0 {
				got = []reply{{typ: 'I'}} // all pieces empty
			}
			if fmt.Sprint(got) != fmt.Sprint(want) {
				t.Errorf("pieces: %v\nwhole:  %v", got, want)
			}
		})
	}
}

// TestServerKeywords: the words a savepoint name cannot be are the server's reserved
// and type_func_name keywords.
func TestServerKeywords(t *testing.T) {
	w := dial(t)
	_, rows, _ := w.rows(t, "SELECT word, catcode FROM pg_get_keywords()")
	if len(rows) < 400 {
		t.Fatalf("pg_get_keywords returned %d rows", len(rows))
	}
	for _, r := range rows {
		want := r[1] == "R" || r[1] == "T"
		if reserved(r[0]) != want || reserved(strings.ToUpper(r[0])) != want {
			t.Errorf("keyword %s (category %s): reserved = %v", r[0], r[1], !want)
		}
	}
}
