package proxy

import (
	"strconv"
	"strings"
	"testing"
)

const (
	listPrepared = "SELECT name, statement FROM pg_prepared_statements ORDER BY name"
	listCursors  = "SELECT name, statement, is_holdable FROM pg_cursors ORDER BY name"
)

// hideCases are sequences in which a client looks at what a plain server shows of a
// session's prepared statements and portals: tx mode's own must never be among them,
// and the client's DEALLOCATE ALL must not disturb the proxy.
var hideCases = []struct {
	name string
	sc   script
}{
	{"prepared statements of the proxy are invisible", script{
		q("SELECT 1"), q("INSERT INTO items VALUES (10, 'ten')"), q(listPrepared),
		run1("SELECT 1"), run1(listPrepared), q(listCursors),
		q("PREPARE mine AS SELECT 1"), q(listPrepared),
		q("BEGIN"), q("SELECT 1/0"), q("ROLLBACK"), q(listPrepared),
		q("SELECT 1/0"), q(listPrepared), run1("SELECT 1/0"), run1(listPrepared),
	}},
	{"deallocate all", script{
		q("SELECT 1"), q("PREPARE mine AS SELECT 1"), q("DEALLOCATE ALL"), q(listPrepared),
		q("SELECT 1"), q("SELECT 1; DEALLOCATE ALL"), q("SELECT 2"), q("SELECT 3"), q(listPrepared),
		run1("DEALLOCATE ALL"), run1("SELECT 4"), run1("SELECT 5"), run1(listPrepared),
		q("BEGIN"), q("DEALLOCATE ALL"), q("COMMIT"), q("SELECT 6"), q(listPrepared),
		q("DO $$BEGIN EXECUTE 'DEALLOCATE ALL'; END$$"), q("SELECT 7"), q("SELECT 8"),
	}},
	{"deallocate all that the proxy cannot see coming", script{
		q("SELECT 1"), q("SELECT 1; DEALLOCATE ALL"), q("SELECT 2"), q("SELECT 3"),
		q("DO $$BEGIN EXECUTE 'DEALLOCATE ALL'; END$$"), q("SELECT 4"), q("SELECT 5"),
	}},
	{"statements of the proxy that fail are invisible", script{
		// Misplaced transaction control in the extended protocol: the proxy's DO block
		// raises the server's error.
		run1("SAVEPOINT a"), q(listPrepared), run1("RELEASE a"), run1(listPrepared),
		q(deferredSetup), run1("INSERT INTO child VALUES (1)"), q(listPrepared),
		q("INSERT INTO child VALUES (2)"), run1(listPrepared),
		// The deferred check of a client's COMMIT fails.
		q("BEGIN"), q("INSERT INTO child VALUES (3)"), run1("COMMIT"), q(listPrepared),
		q("BEGIN"), q("INSERT INTO child VALUES (4)"), run1("COMMIT"), run1(listPrepared),
	}},
	{"portals of the proxy are invisible", script{
		ext(parse("b", "BEGIN"), parse("c", "COMMIT"), syncM()),
		ext(bind("", "b"), execM(""), syncM()), run1("INSERT INTO items VALUES (20, 'x')"),
		ext(bind("", "c"), execM(""), syncM()), q(listCursors), run1(listCursors),
		ext(bind("", "b"), execM(""), syncM()), q("COMMIT AND CHAIN"), q(listCursors), q("COMMIT"),
		q("SELECT 1"), ext(parse("l", listCursors), bind("p", "l"), execM("p"), closeMsg('P', "p"), syncM()),
		run1("SELECT 1"), ext(bind("p", "l"), execM("p"), closeMsg('P', "p"), syncM()),
		q("SELECT 1"), q("SELECT 1 +"), ext(bind("p", "l"), execM("p"), closeMsg('P', "p"), syncM()),
		q("SELECT 1"), q("SELECT 1/0"), ext(bind("p", "l"), execM("p"), closeMsg('P', "p"), syncM()),
	}},
	{"the client's unnamed statement survives the proxy's work", script{
		ext(parse("", "SELECT $1::int"), describe('S', ""), syncM()),
		ext(parse("n", "INSERT INTO items VALUES (30, 'n')"), bind("", "n"), execM(""), syncM()),
		ext(bind("", "", "1"), execM(""), syncM()),
		ext(parse("d", "SAVEPOINT a"), bind("", "d"), execM(""), syncM()),
		ext(bind("", "", "2"), execM(""), syncM()),
		ext(bind("", "n"), execM(""), syncM()),
		ext(bind("", "", "3"), execM(""), syncM()),
		ext(parse("b", "BEGIN"), parse("c", "COMMIT"), bind("", "b"), execM(""), syncM()),
		ext(bind("", "", "4"), execM(""), bind("", "c"), execM(""), syncM()),
		ext(bind("", "", "5"), execM(""), syncM()),
	}},
}

// What the proxy prepares and binds for itself never shows to the client, and the
// client's DEALLOCATE ALL, in any form, leaves the proxy working.
func TestTxHidesItsMachinery(t *testing.T) {
	t.Parallel()
	env := newDiffEnv(t)
	for _, tc := range hideCases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			env.compare(t, tc.sc)
		})
	}
}

// The same sequences on a connection with a session key, whose statements and portals
// the proxy names on the server (so the client sees those names in
// pg_prepared_statements and pg_cursors: the sequences that list them are left out).
func TestTxHidesItsMachineryShared(t *testing.T) {
	t.Parallel()
	env := newDiffEnv(t)
	var cases []struct {
		name string
		sc   script
	}
	for _, tc := range hideCases {
		if tc.name == "deallocate all that the proxy cannot see coming" || tc.name == "the client's unnamed statement survives the proxy's work" {
			cases = append(cases, tc)
		}
	}
	for i, tc := range append(cases, onCommitCases...) {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			env.compareVia(t, tc.sc, proxyURL(env.s, "app", "mode=tx", "session=hide"+strconv.Itoa(i)))
		})
	}
}

// compareVia is compare through the proxy at url.
func (e *diffEnv) compareVia(t *testing.T, sc script, url string) {
	t.Helper()
	plain, proxied := openRaw(t, e.plainDB(t)), openRaw(t, url)
	for i, st := range sc {
		want, got := plain.exchange(t, st), proxied.exchange(t, st)
		if strings.Join(want, "\n") != strings.Join(got, "\n") {
			t.Fatalf("step %d %s: replies differ\nplain server:\n  %s\nthrough the proxy:\n  %s",
				i, describeStep(st), strings.Join(want, "\n  "), strings.Join(got, "\n  "))
		}
	}
}

// A statement of the proxy's that fails inside the client's block, which stays open,
// leaves nothing the client can see once it rolls back to a savepoint of its own.
// (The error is tx mode's own, so no plain server answers the same.)
func TestTxFailedProxyStatementInBlock(t *testing.T) {
	t.Parallel()
	env := newDiffEnv(t)
	r := openRaw(t, proxyURL(env.s, "app", "mode=tx"))
	for _, st := range []step{q("BEGIN"), q("SAVEPOINT s"), run1("SAVEPOINT pgtestproxy_x")} {
		r.exchange(t, st)
	}
	got := r.exchange(t, q("ROLLBACK TO s; SELECT name FROM pg_prepared_statements UNION ALL SELECT name FROM pg_cursors"))
	want := []string{"CommandComplete ROLLBACK", "RowDescription name:25", "CommandComplete SELECT 0", "ReadyForQuery T"}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("got\n  %s\nwant\n  %s", strings.Join(got, "\n  "), strings.Join(want, "\n  "))
	}
}
