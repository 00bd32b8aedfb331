package proxy

import "testing"

// fuzzSteps are the steps a fuzzed sequence is made of.
var fuzzSteps = []step{
	q("BEGIN"), q("COMMIT"), q("ROLLBACK"), q("SAVEPOINT a"), q("RELEASE a"), q("ROLLBACK TO a"),
	q("INSERT INTO items VALUES (10, 'x')"), q("INSERT INTO items VALUES (1, 'dup')"), q("SELECT 1/0"),
	q(countItems), q("BEGIN; INSERT INTO items VALUES (11, 'y'); COMMIT; SELECT 1/0"),
	q("COMMIT AND CHAIN"), q("END; BEGIN"), q("SELECT 1; ROLLBACK; SELECT 2"),
	run1("BEGIN"), run1("COMMIT"), run1("ROLLBACK"), run1("INSERT INTO items VALUES (12, 'z')"),
	run1("SELECT 1/0"), run1(countItems),
	ext(parse("", "SELECT 1"), bind("", ""), execM(""), parse("", "SELECT 1/0"), bind("", ""), execM(""),
		parse("", "COMMIT"), bind("", ""), execM(""), syncM()),
	ext(parse("b", "BEGIN"), syncM()), ext(bind("", "b"), execM(""), syncM()),
	ext(syncM()), q(""),
}

// Random sequences of the steps get the same replies through the proxy in tx mode as
// from a plain server. `go test` runs the seeds; `go test -fuzz` explores.
func FuzzTxMatchesPlainServer(f *testing.F) {
	f.Add([]byte{0, 6, 8, 1, 9})
	f.Add([]byte{14, 18, 15, 0, 16, 20, 9})
	f.Add([]byte{10, 11, 21, 22, 18, 22, 1, 22, 9, 19})
	f.Add([]byte{0, 3, 8, 5, 4, 12, 2, 13, 23, 24})
	env := newDiffEnv(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > 24 {
			data = data[:24]
		}
		sc := make(script, 0, len(data)+1)
		for _, b := range data {
			sc = append(sc, fuzzSteps[int(b)%len(fuzzSteps)])
		}
		sc = append(sc, q(countItems), q("ROLLBACK"))
		env.compare(t, sc)
	})
}
