package proxy

import (
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/pgtestproxy/pgtestproxy/internal/testpg"
)

// The differential harness: a scripted sequence of client messages runs against a
// plain database (a clone of the same template, on a direct connection) and against
// the proxy in tx mode, and the replies must be the same, message by message.

// step is one exchange: the messages, then the replies up to the rfqs-th
// ReadyForQuery (0: one per Sync, Query and FunctionCall sent), or exactly n messages
// when n > 0.
type step struct {
	msgs []pgproto3.FrontendMessage
	rfqs int
	n    int
}

type script []step

// Shorthands for scripts.
func q(sql string) step                         { return step{msgs: []pgproto3.FrontendMessage{&pgproto3.Query{String: sql}}} }
func ext(msgs ...pgproto3.FrontendMessage) step { return step{msgs: msgs} }
func parse(name, sql string) *pgproto3.Parse    { return &pgproto3.Parse{Name: name, Query: sql} }
func bind(portal, stmt string, args ...string) *pgproto3.Bind {
	b := &pgproto3.Bind{DestinationPortal: portal, PreparedStatement: stmt}
	for _, a := range args {
		b.Parameters = append(b.Parameters, []byte(a))
	}
	return b
}
func execM(portal string) *pgproto3.Execute { return &pgproto3.Execute{Portal: portal} }
func describe(kind byte, name string) *pgproto3.Describe {
	return &pgproto3.Describe{ObjectType: kind, Name: name}
}
func closeMsg(kind byte, name string) *pgproto3.Close {
	return &pgproto3.Close{ObjectType: kind, Name: name}
}
func syncM() *pgproto3.Sync  { return &pgproto3.Sync{} }
func flush() *pgproto3.Flush { return &pgproto3.Flush{} }

// run1 runs one unnamed extended-protocol statement: Parse, Bind, Describe portal,
// Execute, Sync.
func run1(sql string, args ...string) step {
	return ext(parse("", sql), bind("", "", args...), describe('P', ""), execM(""), syncM())
}

// rawSession is a hijacked client connection that speaks the protocol by hand.
type rawSession struct {
	conn net.Conn
	fe   *pgproto3.Frontend
}

func openRaw(t testing.TB, connString string) *rawSession {
	t.Helper()
	ctx := testContext(t)
	pc, err := pgconn.Connect(ctx, connString)
	if err != nil {
		t.Fatalf("connect %s: %v", connString, err)
	}
	hc, err := pc.Hijack()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = hc.Conn.Close() })
	return &rawSession{conn: hc.Conn, fe: hc.Frontend}
}

// exchange sends st's messages and returns the replies, normalised to text.
func (r *rawSession) exchange(t testing.TB, st step) []string {
	t.Helper()
	rfqs := st.rfqs
	for _, m := range st.msgs {
		r.fe.Send(m)
		switch m.(type) {
		case *pgproto3.Sync, *pgproto3.Query, *pgproto3.FunctionCall:
			if st.rfqs == 0 {
				rfqs++
			}
		}
	}
	if err := r.fe.Flush(); err != nil {
		t.Fatalf("send: %v", err)
	}
	_ = r.conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	var out []string
	for {
		if st.n > 0 && len(out) == st.n {
			return out
		}
		msg, err := r.fe.Receive()
		if err != nil {
			t.Fatalf("after %q: receive: %v", out, err)
		}
		out = append(out, normalise(msg))
		if _, ok := msg.(*pgproto3.ReadyForQuery); ok && st.n == 0 {
			rfqs--
			if rfqs == 0 {
				return out
			}
		}
	}
}

// normalise renders a backend message as text, leaving out what differs between two
// databases and two servers' builds: source locations, table OIDs.
func normalise(msg pgproto3.BackendMessage) string {
	switch m := msg.(type) {
	case *pgproto3.ErrorResponse:
		return "Error " + fields(m)
	case *pgproto3.NoticeResponse:
		return "Notice " + fields((*pgproto3.ErrorResponse)(m))
	case *pgproto3.RowDescription:
		var cols []string
		for _, f := range m.Fields {
			cols = append(cols, fmt.Sprintf("%s:%d", f.Name, f.DataTypeOID))
		}
		return "RowDescription " + strings.Join(cols, ",")
	case *pgproto3.DataRow:
		var vals []string
		for _, v := range m.Values {
			vals = append(vals, fmt.Sprintf("%q", v))
		}
		return "DataRow " + strings.Join(vals, ",")
	case *pgproto3.CommandComplete:
		return "CommandComplete " + string(m.CommandTag)
	case *pgproto3.ReadyForQuery:
		return "ReadyForQuery " + string(m.TxStatus)
	case *pgproto3.ParameterStatus:
		return "ParameterStatus " + m.Name + "=" + m.Value
	case *pgproto3.ParameterDescription:
		return fmt.Sprintf("ParameterDescription %v", m.ParameterOIDs)
	}
	return strings.TrimPrefix(fmt.Sprintf("%T", msg), "*pgproto3.")
}

func fields(e *pgproto3.ErrorResponse) string {
	return fmt.Sprintf("%s %s %q detail=%q hint=%q pos=%d where=%q constraint=%q",
		e.Severity, e.Code, e.Message, e.Detail, e.Hint, e.Position, e.Where, e.ConstraintName)
}

// diffEnv is a plain database and a tx-mode proxy, both on clones of the template.
type diffEnv struct {
	s   *Server
	p   *testProvider
	tpl string
}

func newDiffEnv(t testing.TB) *diffEnv {
	p := newTestProvider(t)
	return &diffEnv{s: startProxy(t, Config{Provider: p, Logger: nopLogger()}), p: p, tpl: p.templates["app"]}
}

// plainDB returns the URL of a fresh clone of the template, dropped when t ends.
func (e *diffEnv) plainDB(t testing.TB) string {
	t.Helper()
	name := testpg.UniqueName(t, "d_")
	testpg.Exec(t, testpg.AdminURL(t), "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()+" TEMPLATE "+pgx.Identifier{e.tpl}.Sanitize())
	t.Cleanup(func() { dropDatabase(t, name) })
	return testpg.URL(t, name)
}

// compare runs sc on a plain database and through the proxy and reports the first
// step whose replies differ.
func (e *diffEnv) compare(t *testing.T, sc script) {
	t.Helper()
	plain := openRaw(t, e.plainDB(t))
	proxied := openRaw(t, proxyURL(e.s, "app", "mode=tx"))
	for i, st := range sc {
		want := plain.exchange(t, st)
		got := proxied.exchange(t, st)
		if strings.Join(want, "\n") != strings.Join(got, "\n") {
			t.Fatalf("step %d %s: replies differ\nplain server:\n  %s\nthrough the proxy:\n  %s",
				i, describeStep(st), strings.Join(want, "\n  "), strings.Join(got, "\n  "))
		}
	}
}

func describeStep(st step) string {
	var parts []string
	for _, m := range st.msgs {
		switch m := m.(type) {
		case *pgproto3.Query:
			parts = append(parts, fmt.Sprintf("Query(%q)", m.String))
		case *pgproto3.Parse:
			parts = append(parts, fmt.Sprintf("Parse(%q,%q)", m.Name, m.Query))
		default:
			parts = append(parts, strings.TrimPrefix(fmt.Sprintf("%T", m), "*pgproto3."))
		}
	}
	return strings.Join(parts, " ")
}
