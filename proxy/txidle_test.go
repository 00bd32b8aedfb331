package proxy

import (
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"
)

// idleTimeout is the client's idle_in_transaction_session_timeout in these tests:
// small, since a test of it must let that much time pass.
const idleTimeout = "200ms"

// withIdleOption adds the startup option that sets the client's timeout to a URL.
func withIdleOption(u string) string {
	sep := "?"
	if strings.Contains(u, "?") {
		sep = "&"
	}
	return u + sep + "options=" + strings.ReplaceAll(url.QueryEscape("-c idle_in_transaction_session_timeout="+idleTimeout), "+", "%20")
}

// idleCases are differential scripts for a client's own timeout that never let a
// block sit idle.
var idleCases = []struct {
	name    string
	startup bool // the timeout comes from the startup packet
	sc      script
}{
	{"startup option reads back", true, script{
		q("SHOW idle_in_transaction_session_timeout"),
		q("SELECT current_setting('idle_in_transaction_session_timeout')"),
		q("SELECT setting FROM pg_settings WHERE name = 'idle_in_transaction_session_timeout'"),
		run1("SHOW idle_in_transaction_session_timeout"),
		q("BEGIN"), q("SHOW idle_in_transaction_session_timeout"), q("COMMIT"),
		q("SELECT 1/0"), q("SHOW idle_in_transaction_session_timeout"),
		q(""), q("SHOW idle_in_transaction_session_timeout"),
		q("SET idle_in_transaction_session_timeout = '5s'"), q("SHOW idle_in_transaction_session_timeout"),
		q("RESET idle_in_transaction_session_timeout"), q("SHOW idle_in_transaction_session_timeout"),
		q("SELECT count(*) FROM pg_settings WHERE name LIKE 'pgtestproxy%'"),
	}},
	{"SET reads back", false, script{
		q("SHOW idle_in_transaction_session_timeout"),
		q("SET idle_in_transaction_session_timeout = '3s'"), q("SHOW idle_in_transaction_session_timeout"),
		q("BEGIN"), q("SET idle_in_transaction_session_timeout = '4s'"), q("ROLLBACK"),
		q("SHOW idle_in_transaction_session_timeout"),
		q("BEGIN"), q("SET idle_in_transaction_session_timeout = '4s'"), q("COMMIT"),
		q("SHOW idle_in_transaction_session_timeout"),
		q("SET idle_in_transaction_session_timeout = '6s'; SELECT 1/0"), q("SHOW idle_in_transaction_session_timeout"),
		q("BEGIN; SET LOCAL idle_in_transaction_session_timeout = '7s'; SHOW idle_in_transaction_session_timeout; COMMIT"),
		q("SHOW idle_in_transaction_session_timeout"),
		run1("SELECT set_config('idle_in_transaction_session_timeout', '8s', false)"),
		run1("SHOW idle_in_transaction_session_timeout"),
		q("RESET ALL"), q("SHOW idle_in_transaction_session_timeout"),
	}},
	{"blocks, savepoints and the extended protocol", true, script{
		run1("BEGIN"), run1("SHOW idle_in_transaction_session_timeout"), run1("SELECT 1/0"),
		run1("SHOW idle_in_transaction_session_timeout"), run1("ROLLBACK"), run1("SHOW idle_in_transaction_session_timeout"),
		q("BEGIN; SAVEPOINT a; SET idle_in_transaction_session_timeout = '9s'; ROLLBACK TO a; SHOW idle_in_transaction_session_timeout"),
		q("SET idle_in_transaction_session_timeout = '10s'"), q("SAVEPOINT b"), q("SELECT 1/0"), q("ROLLBACK TO b"),
		q("SHOW idle_in_transaction_session_timeout"), q("COMMIT"), q("SHOW idle_in_transaction_session_timeout"),
		ext(parse("", "BEGIN"), bind("", ""), execM(""), syncM(),
			parse("", "SET idle_in_transaction_session_timeout = '11s'"), bind("", ""), execM(""), syncM(),
			parse("", "SHOW idle_in_transaction_session_timeout"), bind("", ""), describe('P', ""), execM(""), syncM(),
			parse("", "COMMIT"), bind("", ""), execM(""), syncM()),
		q("SHOW idle_in_transaction_session_timeout; SELECT 1 -- a comment"),
		q("SHOW idle_in_transaction_session_timeout"),
		q("BEGIN"), q("SET LOCAL idle_in_transaction_session_timeout = '12s'"), q("SHOW idle_in_transaction_session_timeout"),
		q("COMMIT"), q("SHOW idle_in_transaction_session_timeout"),
		q("BEGIN; SET idle_in_transaction_session_timeout = '13s'; COMMIT; SELECT 1/0"), q("SHOW idle_in_transaction_session_timeout"),
	}},
}

// A client's own idle_in_transaction_session_timeout reads back through tx mode as on
// a plain server.
func TestTxIdleTimeoutReadsBack(t *testing.T) {
	t.Parallel()
	env := newDiffEnv(t)
	for _, tc := range idleCases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			plainURL, proxyU := env.plainDB(t), proxyURL(env.s, "app", "mode=tx")
			if tc.startup {
				plainURL, proxyU = withIdleOption(plainURL), withIdleOption(proxyU)
			}
			plain, proxied := openRaw(t, plainURL), openRaw(t, proxyU)
			for i, st := range tc.sc {
				want, got := plain.exchange(t, st), proxied.exchange(t, st)
				if strings.Join(want, "\n") != strings.Join(got, "\n") {
					t.Fatalf("step %d %s: replies differ\nplain server:\n  %s\nthrough the proxy:\n  %s",
						i, describeStep(st), strings.Join(want, "\n  "), strings.Join(got, "\n  "))
				}
			}
		})
	}
}

// idlePause lets well over the client's timeout pass, as a client idle between two
// statements does: the point of the test is time passing, not synchronisation.
func idlePause() { time.Sleep(4 * 200 * time.Millisecond) }

// Autocommit statements spaced longer than the client's timeout (from the startup
// packet, or its own SET) keep the lease: the proxy's transaction is never idle with
// the client's value.
func TestTxIdleTimeoutAutocommit(t *testing.T) {
	t.Parallel()
	env := newDiffEnv(t)
	for _, startup := range []bool{true, false} {
		name := map[bool]string{true: "startup", false: "SET"}[startup]
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			u := proxyURL(env.s, "app", "mode=tx")
			if startup {
				u = withIdleOption(u)
			}
			r := openRaw(t, u)
			steps := []step{q("SET idle_in_transaction_session_timeout = '" + idleTimeout + "'"),
				q("SELECT 1"), q("SELECT 1/0"), run1("SELECT 2"), q("BEGIN; SELECT 3; COMMIT"), q("SELECT 4")}
			if startup {
				steps = steps[1:]
			}
			for i, st := range steps {
				got := strings.Join(r.exchange(t, st), "\n")
				if strings.Contains(got, "FATAL") || strings.Contains(got, "25P03") {
					t.Fatalf("step %d %s: %s", i, describeStep(st), got)
				}
				idlePause()
			}
			if got := strings.Join(r.exchange(t, q("SELECT 5")), "\n"); !strings.Contains(got, "ReadyForQuery") || strings.Contains(got, "FATAL") {
				t.Fatalf("the lease did not survive: %s", got)
			}
		})
	}
}

// A client's block idle longer than its timeout ends the client with FATAL 25P03, as
// on a plain server.
func TestTxIdleTimeoutBlock(t *testing.T) {
	t.Parallel()
	env := newDiffEnv(t)
	for _, startup := range []bool{true, false} {
		name := map[bool]string{true: "startup", false: "SET"}[startup]
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			plainURL, proxyU := env.plainDB(t), proxyURL(env.s, "app", "mode=tx")
			if startup {
				plainURL, proxyU = withIdleOption(plainURL), withIdleOption(proxyU)
			}
			var want string
			for i, u := range []string{plainURL, proxyU} {
				r := openRaw(t, u)
				if !startup {
					r.exchange(t, q("SET idle_in_transaction_session_timeout = '"+idleTimeout+"'"))
				}
				r.exchange(t, q("BEGIN"))
				r.exchange(t, q("SELECT 1"))
				got := awaitFatal(t, r)
				r = openRaw(t, u)
				if !startup {
					r.exchange(t, q("SET idle_in_transaction_session_timeout = '"+idleTimeout+"'"))
				}
				r.exchange(t, q("BEGIN"))
				r.exchange(t, q("SELECT 1/0")) // a failed block is idle too
				got += "\n" + awaitFatal(t, r)
				if i == 0 {
					want = got
				} else if got != want {
					t.Fatalf("idle block:\nplain server:\n  %s\nthrough the proxy:\n  %s", want, got)
				}
			}
		})
	}
}

// awaitFatal waits, with a deadline, for the FATAL that ends an idle session and
// returns it.
func awaitFatal(t *testing.T, r *rawSession) string {
	t.Helper()
	_ = r.conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	msg, err := r.fe.Receive()
	if err != nil {
		t.Fatalf("waiting for the timeout's FATAL: %v", err)
	}
	if _, ok := msg.(*pgproto3.ErrorResponse); !ok {
		t.Fatalf("got %T, want the timeout's FATAL", msg)
	}
	return normalise(msg)
}

// On a shared session key, the connection whose block sits idle past its timeout is
// ended with 25P03; the key's other connection goes on, on the same backend.
func TestTxIdleTimeoutShared(t *testing.T) {
	t.Parallel()
	env := newDiffEnv(t)
	u := proxyURL(env.s, "app", "mode=tx", "session=idle-shared")
	idler, other := openRaw(t, withIdleOption(u)), openRaw(t, u)
	pid := strings.Join(other.exchange(t, q("SELECT pg_backend_pid()")), "\n")
	idler.exchange(t, q("BEGIN"))
	idler.exchange(t, q("INSERT INTO items VALUES (10, 'x')"))
	if got := awaitFatal(t, idler); !strings.Contains(got, "FATAL 25P03") {
		t.Fatalf("the idle block got %s", got)
	}
	if got := strings.Join(other.exchange(t, q("SELECT pg_backend_pid()")), "\n"); got != pid {
		t.Fatalf("the other connection: before %s, after %s", pid, got)
	}
	if got := strings.Join(other.exchange(t, q(countItems)), "\n"); !strings.Contains(got, "DataRow") {
		t.Fatalf("the other connection: %s", got)
	}
}

// Every differential script behaves as on a plain server on a lease that guards its
// client's idle_in_transaction_session_timeout (a long one, from the startup packet):
// the guard and its undoing at every unit change nothing the client sees.
func TestTxIdleGuardedMatchesPlainServer(t *testing.T) {
	t.Parallel()
	env := newDiffEnv(t)
	opt := func(u string) string {
		return u + "&options=" + strings.ReplaceAll(url.QueryEscape("-c idle_in_transaction_session_timeout=1h"), "+", "%20")
	}
	var all []struct {
		name string
		sc   script
	}
	for _, tc := range diffCases {
		all = append(all, struct {
			name string
			sc   script
		}{tc.name, tc.sc})
	}
	for _, cases := range [][]struct {
		name string
		sc   script
	}{localCases, roCases, isoCases, onCommitCases, hideCases} {
		all = append(all, cases...)
	}
	for _, tc := range all {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			plain, proxied := openRaw(t, opt(env.plainDB(t))), openRaw(t, opt(proxyURL(env.s, "app", "mode=tx")))
			for i, st := range tc.sc {
				want, got := plain.exchange(t, st), proxied.exchange(t, st)
				if strings.Join(want, "\n") != strings.Join(got, "\n") {
					t.Fatalf("step %d %s: replies differ\nplain server:\n  %s\nthrough the proxy:\n  %s",
						i, describeStep(st), strings.Join(want, "\n  "), strings.Join(got, "\n  "))
				}
			}
		})
	}
}

// A connection of a session key that reconnects gets its own startup value, or the
// server's, as a new connection to a plain server does.
func TestTxIdleTimeoutReconnect(t *testing.T) {
	t.Parallel()
	env := newDiffEnv(t)
	u := proxyURL(env.s, "app", "mode=tx", "session=idle-reconnect")
	show := q("SHOW idle_in_transaction_session_timeout")
	for i, tc := range []struct {
		url, want string
	}{{withIdleOption(u), idleTimeout}, {u, "0"}, {withIdleOption(u), idleTimeout}, {u, "0"}} {
		r := openRaw(t, tc.url)
		if got := strings.Join(r.exchange(t, show), "\n"); !strings.Contains(got, `DataRow "`+tc.want+`"`) {
			t.Fatalf("connection %d: %s, want %s", i, got, tc.want)
		}
		r.fe.Send(&pgproto3.Terminate{})
		_ = r.fe.Flush()
		_ = r.conn.Close()
		// Once the proxy has seen it leave, the next one is a new connection, not
		// one that joins it.
		waitFor(t, "the connection to leave", func() bool { return env.s.Stats().SessionsActive == 0 })
	}
}
