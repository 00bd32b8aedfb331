package proxy

import (
	"strings"
	"testing"
)

// What tx mode does where it cannot do what a plain server does (README, FAQ): clear
// errors with a mode=db hint, transaction modes accepted with a NOTICE, the proxy's
// savepoint names reserved, the server's timeouts off.
func TestTxOnlyBehaviour(t *testing.T) {
	t.Parallel()
	env := newDiffEnv(t)
	cases := []struct {
		name string
		st   step
		want []string // substrings of the replies, in order
	}{
		{"vacuum", q("VACUUM items"), []string{`Notice NOTICE 00000 "tx mode ran nothing for VACUUM`,
			"CommandComplete VACUUM", "ReadyForQuery I"}},
		{"vacuum analyze", q("VACUUM (ANALYZE, VERBOSE) items; VACUUM FULL ANALYZE items"), []string{
			`Notice NOTICE 00000 "tx mode ran ANALYZE for VACUUM`, "CommandComplete VACUUM",
			`Notice NOTICE 00000 "tx mode ran ANALYZE for VACUUM`, "CommandComplete VACUUM", "ReadyForQuery I"}},
		{"vacuum of nothing", q("VACUUM ANALYZE nosuchtable"), []string{`Error ERROR 42P01`, "ReadyForQuery I"}},
		{"create index concurrently", q("CREATE UNIQUE INDEX CONCURRENTLY items_name ON items (name)"), []string{
			`Notice NOTICE 00000 "tx mode ran CREATE INDEX without CONCURRENTLY"`, "CommandComplete CREATE INDEX", "ReadyForQuery I"}},
		{"reindex and drop index concurrently", q("REINDEX INDEX CONCURRENTLY items_name; DROP INDEX CONCURRENTLY items_name"), []string{
			`Notice NOTICE 00000 "tx mode ran REINDEX without CONCURRENTLY"`, "CommandComplete REINDEX",
			`Notice NOTICE 00000 "tx mode ran DROP INDEX without CONCURRENTLY"`, "CommandComplete DROP INDEX", "ReadyForQuery I"}},
		{"index is gone", q("SELECT count(*) FROM pg_indexes WHERE indexname = 'items_name'"), []string{`DataRow "0"`}},
		{"create database", q("CREATE DATABASE nope"), []string{`Error ERROR 25001 "CREATE DATABASE cannot run inside a transaction block"`,
			`hint="tx mode runs the session inside one transaction of the proxy; connect with mode=db`, "ReadyForQuery I"}},
		{"create database in a string", q("SELECT 1; CREATE DATABASE nope"), []string{"DataRow", "CommandComplete SELECT 1",
			"Error ERROR 25001", "mode=db", "ReadyForQuery I"}},
		{"create index concurrently, extended", run1("CREATE INDEX CONCURRENTLY ON items (name)"),
			[]string{"ParseComplete", "BindComplete", "NoData", "Error ERROR 25001", "mode=db", "ReadyForQuery I"}},
		{"prepare transaction", q("PREPARE TRANSACTION 'gid'"), []string{
			`Error ERROR 0A000 "PREPARE TRANSACTION is not supported in tx mode"`, "mode=db", "ReadyForQuery I"}},
		{"prepare transaction ends the block", q("BEGIN; INSERT INTO items VALUES (70, 'x'); PREPARE TRANSACTION 'gid'"), []string{
			"CommandComplete BEGIN", "CommandComplete INSERT 0 1", `Error ERROR 0A000 "PREPARE TRANSACTION is not supported in tx mode"`, "ReadyForQuery I"}},
		{"after prepare transaction", q("SELECT count(*) FROM items WHERE id = 70"), []string{`DataRow "0"`, "ReadyForQuery I"}},
		{"extended prepare transaction ends the block", ext(parse("", "BEGIN"), bind("", ""), execM(""),
			parse("", "PREPARE TRANSACTION 'gid'"), bind("", ""), execM(""), syncM()), []string{
			"CommandComplete BEGIN", "ParseComplete", "BindComplete", `Error ERROR 0A000`, "ReadyForQuery I"}},
		{"commit prepared", q("COMMIT PREPARED 'gid'"), []string{"Error ERROR 25001", "mode=db", "ReadyForQuery I"}},
		{"begin with modes", q("BEGIN ISOLATION LEVEL SERIALIZABLE, READ ONLY"), []string{
			`Notice NOTICE 00000 "tx mode does not apply transaction modes: ISOLATION LEVEL SERIALIZABLE"`,
			"CommandComplete BEGIN", "ReadyForQuery T"}},
		{"set transaction in a block", q("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ"), []string{
			`Notice NOTICE 00000 "tx mode does not apply transaction modes: ISOLATION LEVEL REPEATABLE READ"`,
			"CommandComplete SET", "ReadyForQuery T"}},
		{"reserved savepoint", q("SAVEPOINT pgtestproxy"), []string{`Error ERROR 42939`, "ReadyForQuery E"}},
		{"rollback", q("ROLLBACK"), []string{"CommandComplete ROLLBACK", "ReadyForQuery I"}},
		{"extended begin with modes", ext(parse("", "START TRANSACTION ISOLATION LEVEL SERIALIZABLE, READ ONLY"), bind("", ""), execM(""), syncM()),
			[]string{"ParseComplete", "BindComplete", "Notice NOTICE", "CommandComplete START TRANSACTION", "ReadyForQuery T"}},
		{"extended commit", ext(parse("", "COMMIT"), bind("", ""), execM(""), syncM()),
			[]string{"ParseComplete", "BindComplete", "CommandComplete COMMIT", "ReadyForQuery I"}},
		{"session characteristics pass", q("SET SESSION CHARACTERISTICS AS TRANSACTION ISOLATION LEVEL SERIALIZABLE"),
			[]string{"CommandComplete SET", "ReadyForQuery I"}},
	}
	r := openRaw(t, proxyURL(env.s, "app", "mode=tx"))
	check := r.exchange(t, q("SHOW idle_in_transaction_session_timeout"))
	if !strings.Contains(strings.Join(check, "\n"), `DataRow "0"`) {
		t.Errorf("idle_in_transaction_session_timeout is not off: %q", check)
	}
	for _, tc := range cases {
		got := r.exchange(t, tc.st)
		all := strings.Join(got, "\n")
		at := 0
		for _, w := range tc.want {
			i := strings.Index(all[at:], w)
			if i < 0 {
				t.Errorf("%s: want %q after position %d in\n%s", tc.name, w, at, all)
				break
			}
			at += i + len(w)
		}
	}
}
