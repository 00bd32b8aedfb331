package sqllex

import (
	"slices"
	"strings"
	"testing"
)

// srvCheck says how TestServerClassify verifies a case against PostgreSQL.
type srvCheck uint8

const (
	srvAuto   srvCheck = iota // by Kind: run it where it belongs and compare tags, modes, names, errors
	srvSyntax                 // the server must reject it with a syntax error (42601)
	srvError                  // the server must reject it, with any error
	srvSkip                   // not checked (reason in a comment)
)

type classifyCase struct {
	sql  string
	want Statement // Text, Start and End are filled in by the test
	srv  srvCheck
}

func begin(m TxModes) Statement { return Statement{Kind: Begin, Tag: "BEGIN", Modes: m} }
func start(m TxModes) Statement {
	return Statement{Kind: Begin, Tag: "START TRANSACTION", Modes: m}
}
func commit(chain bool) Statement   { return Statement{Kind: Commit, Tag: "COMMIT", Chain: chain} }
func rollback(chain bool) Statement { return Statement{Kind: Rollback, Tag: "ROLLBACK", Chain: chain} }
func savepoint(kind Kind, raw, name string) Statement {
	tag := map[Kind]string{Savepoint: "SAVEPOINT", Release: "RELEASE", RollbackTo: "ROLLBACK"}[kind]
	return Statement{Kind: kind, Tag: tag, Name: Ident{Raw: raw, Name: name}}
}
func twoPhase(kind Kind, gid string) Statement {
	st := Statement{Kind: kind, Literal: gid}
	switch kind {
	case PrepareTransaction:
		st.Tag = "PREPARE TRANSACTION"
	case CommitPrepared:
		st.Tag, st.NoTxCommand = "COMMIT PREPARED", "COMMIT PREPARED"
	case RollbackPrepared:
		st.Tag, st.NoTxCommand = "ROLLBACK PREPARED", "ROLLBACK PREPARED"
	}
	return st
}
func setTx(m TxModes, session bool) Statement {
	return Statement{Kind: SetTransaction, Tag: "SET", Modes: m, Session: session}
}
func noTx(cmd string) Statement { return Statement{Kind: NoTxBlock, NoTxCommand: cmd} }

func channel(kind Kind, raw, name string) Statement {
	tag := map[Kind]string{Listen: "LISTEN", Unlisten: "UNLISTEN", Notify: "NOTIFY"}[kind]
	return Statement{Kind: kind, Tag: tag, Name: Ident{Raw: raw, Name: name}}
}
func notify(raw, name, payload string) Statement {
	st := channel(Notify, raw, name)
	st.Literal = payload
	return st
}

var (
	other = Statement{Kind: Other}
	empty = Statement{Kind: Empty}
)

var classifyCases = []classifyCase{
	// Empty.
	{"", empty, srvAuto},
	{" \t\r\n\f", empty, srvAuto},
	{"/* c */", empty, srvAuto},
	{"/* a /* nested */ b */ -- c", empty, srvAuto},
	{"-- only a comment", empty, srvAuto},
	{";", empty, srvAuto},
	{" ; ;-- c", empty, srvAuto},
	{"/* unterminated", other, srvSyntax},
	{"/* a /* b */", other, srvSyntax}, // the outer comment is still open

	// LISTEN, UNLISTEN, NOTIFY.
	{"LISTEN events", channel(Listen, "events", "events"), srvAuto},
	{"listen Events;", channel(Listen, "Events", "events"), srvAuto},
	{`LISTEN "Mixed Case"`, channel(Listen, `"Mixed Case"`, "Mixed Case"), srvAuto},
	{"UNLISTEN events", channel(Unlisten, "events", "events"), srvAuto},
	{"unlisten *", Statement{Kind: Unlisten, Tag: "UNLISTEN"}, srvAuto},
	{"UNLISTEN * ;", Statement{Kind: Unlisten, Tag: "UNLISTEN"}, srvAuto},
	{"NOTIFY events", notify("events", "events", ""), srvAuto},
	{"NOTIFY events, 'hello'", notify("events", "events", "hello"), srvAuto},
	{"notify /* c */ Ev , 'it''s' ;", notify("Ev", "ev", "it's"), srvAuto},
	{`NOTIFY "a b", E'x\ny'`, notify(`"a b"`, "a b", "x\ny"), srvAuto},
	{"NOTIFY ch, $$d$$", notify("ch", "ch", "d"), srvAuto},
	{"NOTIFY ch, ''", notify("ch", "ch", ""), srvAuto},
	{"LISTEN", other, srvSyntax},
	{"LISTEN a b", other, srvSyntax},
	{"LISTEN select", other, srvSyntax},
	{"UNLISTEN * x", other, srvSyntax},
	{"NOTIFY", other, srvSyntax},
	{"NOTIFY ch,", other, srvSyntax},
	{"NOTIFY ch, 1", other, srvSyntax},
	{"NOTIFY ch 'p'", other, srvSyntax},
	{"NOTIFY ch, 'p'; SELECT 1", other, srvSkip}, // two statements: Split's job

	// BEGIN and START TRANSACTION.
	{"BEGIN", begin(TxModes{}), srvAuto},
	{"begin", begin(TxModes{}), srvAuto},
	{"Begin Work", begin(TxModes{}), srvAuto},
	{"BEGIN TRANSACTION", begin(TxModes{}), srvAuto},
	{"BEGIN;", begin(TxModes{}), srvAuto},
	{"BEGIN ; ; ", begin(TxModes{}), srvAuto},
	{"  \n\tBEGIN  -- trailing comment\n", begin(TxModes{}), srvAuto},
	{"/* leading */ BEGIN /* trailing */", begin(TxModes{}), srvAuto},
	{"START TRANSACTION", start(TxModes{}), srvAuto},
	{"start transaction;", start(TxModes{}), srvAuto},
	{"BEGIN /* x */ ISOLATION LEVEL /* y */ SERIALIZABLE", begin(TxModes{Isolation: Serializable}), srvAuto},
	{"BEGIN/**/ISOLATION/*x*/LEVEL--y\nSERIALIZABLE", begin(TxModes{Isolation: Serializable}), srvAuto},
	{"BEGIN\tISOLATION\r\nLEVEL\fREPEATABLE\nREAD", begin(TxModes{Isolation: RepeatableRead}), srvAuto},
	{"BEGIN WORK ISOLATION LEVEL READ UNCOMMITTED", begin(TxModes{Isolation: ReadUncommitted}), srvAuto},
	{"begin transaction isolation level read committed, read only, deferrable",
		begin(TxModes{Isolation: ReadCommitted, ReadOnly: Yes, Deferrable: Yes}), srvAuto},
	{"BEGIN ISOLATION LEVEL REPEATABLE READ READ WRITE NOT DEFERRABLE",
		begin(TxModes{Isolation: RepeatableRead, ReadOnly: No, Deferrable: No}), srvAuto},
	{"START TRANSACTION READ ONLY", start(TxModes{ReadOnly: Yes}), srvAuto},
	{"START TRANSACTION NOT DEFERRABLE, ISOLATION LEVEL SERIALIZABLE",
		start(TxModes{Isolation: Serializable, Deferrable: No}), srvAuto},
	{"BEGIN DEFERRABLE;", begin(TxModes{Deferrable: Yes}), srvAuto},
	{"BEGIN READ ONLY, READ WRITE", begin(TxModes{ReadOnly: No}), srvAuto}, // the last one wins
	{"BEGIN ISOLATION LEVEL SERIALIZABLE ISOLATION LEVEL READ COMMITTED", begin(TxModes{Isolation: ReadCommitted}), srvAuto},
	{"BEGIN foo", other, srvSyntax},
	{"BEGIN WORK WORK", other, srvSyntax},
	{"BEGIN TRANSACTION WORK", other, srvSyntax},
	{"BEGIN \"work\"", other, srvSyntax},
	{"BEGIN ISOLATION LEVEL", other, srvSyntax},
	{"BEGIN ISOLATION LEVEL REPEATABLE", other, srvSyntax},
	{"BEGIN ISOLATION LEVEL SERIALIZABLE,", other, srvSyntax},
	{"BEGIN , READ ONLY", other, srvSyntax},
	{"BEGIN READ ONLY,, READ WRITE", other, srvSyntax},
	{"BEGIN READ", other, srvSyntax},
	{"BEGIN NOT", other, srvSyntax},
	{"BEGIN ATOMIC", other, srvSyntax},
	{"BEGIN /* unterminated", other, srvSyntax},
	{"BEGINWORK", other, srvSyntax},
	{"\"BEGIN\"", other, srvSyntax},
	{"START", other, srvSyntax},
	{"START WORK", other, srvSyntax},
	{"BEGIN; SELECT 1", other, srvSkip}, // a Parse message holding two statements: refused by the server
	{"BEGIN ISOLATION LEVEL SERIALIZABLE; SELECT 1", other, srvSkip},

	// COMMIT and END.
	{"COMMIT", commit(false), srvAuto},
	{"commit work", commit(false), srvAuto},
	{"COMMIT TRANSACTION;", commit(false), srvAuto},
	{"END", commit(false), srvAuto},
	{"end transaction", commit(false), srvAuto},
	{"END WORK", commit(false), srvAuto},
	{"COMMIT AND CHAIN", commit(true), srvAuto},
	{"COMMIT /* c */ AND /* d */ NO CHAIN", commit(false), srvAuto},
	{"END TRANSACTION AND CHAIN", commit(true), srvAuto},
	{"COMMIT AND", other, srvSyntax},
	{"COMMIT NO CHAIN", other, srvSyntax},
	{"COMMIT CHAIN", other, srvSyntax},
	{"COMMIT WORK TRANSACTION", other, srvSyntax},
	{"END IF", other, srvSyntax},
	{"END LOOP", other, srvSyntax},
	{"COMMIT PREPARED", other, srvSyntax},

	// ROLLBACK and ABORT.
	{"ROLLBACK", rollback(false), srvAuto},
	{"ABORT", rollback(false), srvAuto},
	{"rollback work;", rollback(false), srvAuto},
	{"ABORT TRANSACTION", rollback(false), srvAuto},
	{"ROLLBACK AND CHAIN", rollback(true), srvAuto},
	{"ABORT WORK AND NO CHAIN", rollback(false), srvAuto},
	{"ROLLBACK sp", other, srvSyntax},
	{"ROLLBACK TO", other, srvSyntax},
	{"ABORT TO sp", other, srvSyntax},
	{"ABORT PREPARED 'x'", other, srvSyntax},

	// Savepoints.
	{"SAVEPOINT sp1", savepoint(Savepoint, "sp1", "sp1"), srvAuto},
	{"savepoint MySp;", savepoint(Savepoint, "MySp", "mysp"), srvAuto},
	{`SAVEPOINT "MySp"`, savepoint(Savepoint, `"MySp"`, "MySp"), srvAuto},
	{`SAVEPOINT "a""b"`, savepoint(Savepoint, `"a""b"`, `a"b`), srvAuto},
	{`SAVEPOINT "semi;colon"`, savepoint(Savepoint, `"semi;colon"`, "semi;colon"), srvAuto},
	{`SAVEPOINT U&"d\0061t\+000061"`, savepoint(Savepoint, `U&"d\0061t\+000061"`, "data"), srvAuto},
	{`SAVEPOINT u&"d!0061t!!" UESCAPE '!'`, savepoint(Savepoint, `u&"d!0061t!!" UESCAPE '!'`, "dat!"), srvAuto},
	{`SAVEPOINT U&"\D83D\DE00"`, savepoint(Savepoint, `U&"\D83D\DE00"`, "\U0001F600"), srvAuto},
	{"SAVEPOINT " + strings.Repeat("A", 70), savepoint(Savepoint, strings.Repeat("A", 70), strings.Repeat("a", 63)), srvAuto},
	{"SAVEPOINT \"" + strings.Repeat("é", 40) + "\"", savepoint(Savepoint, "\""+strings.Repeat("é", 40)+"\"", strings.Repeat("é", 31)), srvAuto},
	{"SAVEPOINT Ä", savepoint(Savepoint, "Ä", "Ä"), srvAuto}, // only ASCII letters are folded
	{"SAVEPOINT work", savepoint(Savepoint, "work", "work"), srvAuto},
	{"SAVEPOINT savepoint", savepoint(Savepoint, "savepoint", "savepoint"), srvAuto},
	{"SAVEPOINT", other, srvSyntax},
	{"SAVEPOINT select", other, srvSyntax},
	{"SAVEPOINT verbose", other, srvSyntax},
	{"SAVEPOINT a b", other, srvSyntax},
	{`SAVEPOINT ""`, other, srvSyntax},
	{"SAVEPOINT 'sp'", other, srvSyntax},
	{`SAVEPOINT "unterminated`, other, srvSyntax},
	{`SAVEPOINT U&"\D83D"`, other, srvError},
	{`SAVEPOINT U&"a" UESCAPE '+'`, other, srvError},
	{"RELEASE sp", savepoint(Release, "sp", "sp"), srvAuto},
	{"RELEASE SAVEPOINT sp", savepoint(Release, "sp", "sp"), srvAuto},
	{"release savepoint \"Sp\";", savepoint(Release, `"Sp"`, "Sp"), srvAuto},
	{"RELEASE SAVEPOINT", savepoint(Release, "SAVEPOINT", "savepoint"), srvAuto},
	{"RELEASE SAVEPOINT savepoint", savepoint(Release, "savepoint", "savepoint"), srvAuto},
	{"RELEASE", other, srvSyntax},
	{"RELEASE SAVEPOINT a b", other, srvSyntax},
	{"ROLLBACK TO sp", savepoint(RollbackTo, "sp", "sp"), srvAuto},
	{"ROLLBACK TO SAVEPOINT sp", savepoint(RollbackTo, "sp", "sp"), srvAuto},
	{`ROLLBACK WORK TO SAVEPOINT "Sp 1"`, savepoint(RollbackTo, `"Sp 1"`, "Sp 1"), srvAuto},
	{"rollback transaction to Sp_X", savepoint(RollbackTo, "Sp_X", "sp_x"), srvAuto},
	{"ROLLBACK TO savepoint", savepoint(RollbackTo, "savepoint", "savepoint"), srvAuto},
	{"ROLLBACK TO SAVEPOINT transaction", savepoint(RollbackTo, "transaction", "transaction"), srvAuto},
	{"ROLLBACK TO SAVEPOINT sp AND CHAIN", other, srvSyntax},
	{"ROLLBACK TO select", other, srvSyntax},

	// Two-phase commit.
	{"PREPARE TRANSACTION 'gid1'", twoPhase(PrepareTransaction, "gid1"), srvAuto},
	{"prepare transaction $$g;1$$;", twoPhase(PrepareTransaction, "g;1"), srvAuto},
	{"PREPARE TRANSACTION E'a\\'b'", twoPhase(PrepareTransaction, "a'b"), srvAuto},
	{"PREPARE TRANSACTION 'a'\n'b'", twoPhase(PrepareTransaction, "ab"), srvAuto},
	{"PREPARE TRANSACTION gid", other, srvSyntax},
	{"PREPARE TRANSACTION B'01'", other, srvSyntax},
	{"PREPARE transaction AS SELECT 1", other, srvAuto}, // a prepared statement named "transaction"
	{"PREPARE p AS SELECT 1", other, srvAuto},
	{"COMMIT PREPARED 'gid1'", twoPhase(CommitPrepared, "gid1"), srvAuto},
	{"COMMIT PREPARED 'it''s'", twoPhase(CommitPrepared, "it's"), srvAuto},
	{"COMMIT PREPARED E'\\x41\\102\\u0043\\U00000044\\n\\q'", twoPhase(CommitPrepared, "ABCD\nq"), srvAuto},
	{`COMMIT PREPARED U&'\0041!!' UESCAPE '!'`, twoPhase(CommitPrepared, `\0041!`), srvAuto},
	{`COMMIT PREPARED U&'\0041!' UESCAPE '!'`, other, srvError}, // a lone escape character
	{`COMMIT PREPARED U&'!0041' UESCAPE '!'`, twoPhase(CommitPrepared, "A"), srvAuto},
	{"COMMIT PREPARED $x$a'b$x$", twoPhase(CommitPrepared, "a'b"), srvAuto},
	{"ROLLBACK PREPARED 'gid1'", twoPhase(RollbackPrepared, "gid1"), srvAuto},
	{"COMMIT PREPARED gid", other, srvSyntax},
	{"COMMIT PREPARED 'a' 'b'", other, srvSyntax},
	{"COMMIT PREPARED 'a' AND CHAIN", other, srvSyntax},
	{"COMMIT PREPARED E'\\0'", other, srvError},
	{"COMMIT PREPARED E'\\uD800'", other, srvError},

	// SET TRANSACTION.
	{"SET TRANSACTION ISOLATION LEVEL SERIALIZABLE", setTx(TxModes{Isolation: Serializable}, false), srvAuto},
	{"set transaction read only, deferrable", setTx(TxModes{ReadOnly: Yes, Deferrable: Yes}, false), srvAuto},
	{"SET LOCAL TRANSACTION READ WRITE", setTx(TxModes{ReadOnly: No}, false), srvAuto},
	{"SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ", setTx(TxModes{Isolation: RepeatableRead}, false), srvAuto},
	{"SET SESSION CHARACTERISTICS AS TRANSACTION ISOLATION LEVEL REPEATABLE READ",
		setTx(TxModes{Isolation: RepeatableRead}, true), srvAuto},
	{"set session session characteristics as transaction read only", setTx(TxModes{ReadOnly: Yes}, true), srvAuto},
	{"SET LOCAL SESSION CHARACTERISTICS AS TRANSACTION NOT DEFERRABLE", setTx(TxModes{Deferrable: No}, true), srvAuto},
	{"SET TRANSACTION SNAPSHOT '00000003-0000001B-1'",
		Statement{Kind: SetTransaction, Tag: "SET", Literal: "00000003-0000001B-1"}, srvAuto},
	{"SET transaction_isolation = 'Serializable'", setTx(TxModes{Isolation: Serializable}, false), srvAuto},
	{"SET LOCAL transaction_isolation TO 'repeatable read'", setTx(TxModes{Isolation: RepeatableRead}, false), srvAuto},
	{"SET transaction_isolation TO serializable", setTx(TxModes{Isolation: Serializable}, false), srvAuto},
	{"SET transaction_read_only = on", setTx(TxModes{ReadOnly: Yes}, false), srvAuto},
	{"SET transaction_read_only TO 'of'", setTx(TxModes{ReadOnly: No}, false), srvAuto},
	{"SET transaction_deferrable = 1", setTx(TxModes{Deferrable: Yes}, false), srvAuto},
	{"SET default_transaction_isolation = 'read uncommitted'", setTx(TxModes{Isolation: ReadUncommitted}, true), srvAuto},
	{"SET SESSION default_transaction_read_only = TRUE", setTx(TxModes{ReadOnly: Yes}, true), srvAuto},
	{"SET default_transaction_deferrable TO y", setTx(TxModes{Deferrable: Yes}, true), srvAuto},
	{"SET transaction_isolation = DEFAULT", other, srvAuto}, // a reset, not a mode
	{"SET transaction_read_only = 'o'", other, srvError},
	{"SET TRANSACTION", other, srvSyntax},
	{"SET TRANSACTION SNAPSHOT", other, srvSyntax},
	{"SET SESSION CHARACTERISTICS AS TRANSACTION", other, srvSyntax},
	{"SET SESSION CHARACTERISTICS AS TRANSACTION SNAPSHOT 'x'", other, srvSyntax},
	{"SET search_path = public", other, srvAuto},
	{"SET SESSION AUTHORIZATION DEFAULT", other, srvAuto},

	// Statements that cannot run inside a transaction block.
	{"CREATE DATABASE d", noTx("CREATE DATABASE"), srvAuto},
	{`create database "D" TEMPLATE template0`, noTx("CREATE DATABASE"), srvAuto},
	{"DROP DATABASE d", noTx("DROP DATABASE"), srvAuto},
	{"DROP DATABASE IF EXISTS d WITH (FORCE)", noTx("DROP DATABASE"), srvAuto},
	{"ALTER DATABASE d SET TABLESPACE pg_default", noTx("ALTER DATABASE SET TABLESPACE"), srvAuto},
	{"ALTER DATABASE d WITH TABLESPACE pg_default", noTx("ALTER DATABASE SET TABLESPACE"), srvAuto},
	{"ALTER DATABASE \"d\" TABLESPACE = pg_default", noTx("ALTER DATABASE SET TABLESPACE"), srvAuto},
	{"CREATE TABLESPACE ts LOCATION '/nonexistent'", noTx("CREATE TABLESPACE"), srvAuto},
	{"DROP TABLESPACE IF EXISTS ts", noTx("DROP TABLESPACE"), srvAuto},
	{"ALTER SYSTEM SET work_mem = '1MB'", noTx("ALTER SYSTEM"), srvAuto},
	{"alter system reset all", noTx("ALTER SYSTEM"), srvAuto},
	{"VACUUM", noTx("VACUUM"), srvAuto},
	{"vacuum full t", noTx("VACUUM"), srvAuto},
	{"VACUUM (ANALYZE, VERBOSE) t", noTx("VACUUM"), srvAuto},
	{"VACUUM ANALYZE", noTx("VACUUM"), srvAuto},
	{"CLUSTER", noTx("CLUSTER"), srvAuto},
	{"CLUSTER VERBOSE;", noTx("CLUSTER"), srvAuto},
	{"CLUSTER (VERBOSE)", noTx("CLUSTER"), srvSkip}, // PostgreSQL 16 and later; a syntax error in 15
	{"REINDEX DATABASE d", noTx("REINDEX DATABASE"), srvAuto},
	{"REINDEX (VERBOSE) DATABASE d", noTx("REINDEX DATABASE"), srvAuto},
	{"REINDEX SYSTEM d", noTx("REINDEX SYSTEM"), srvAuto},
	{"REINDEX SCHEMA public", noTx("REINDEX SCHEMA"), srvAuto},
	{"REINDEX TABLE CONCURRENTLY t", noTx("REINDEX CONCURRENTLY"), srvAuto},
	{"reindex index concurrently i", noTx("REINDEX CONCURRENTLY"), srvAuto},
	{"REINDEX DATABASE CONCURRENTLY d", noTx("REINDEX CONCURRENTLY"), srvAuto},
	{"REINDEX (CONCURRENTLY) TABLE t", noTx("REINDEX CONCURRENTLY"), srvAuto},
	{"REINDEX (VERBOSE, CONCURRENTLY true) INDEX i", noTx("REINDEX CONCURRENTLY"), srvAuto},
	{"REINDEX (CONCURRENTLY 'on') SCHEMA public", noTx("REINDEX CONCURRENTLY"), srvAuto},
	{"REINDEX (CONCURRENTLY off) SCHEMA public", noTx("REINDEX SCHEMA"), srvAuto},
	{"CREATE INDEX CONCURRENTLY i2 ON t (x)", noTx("CREATE INDEX CONCURRENTLY"), srvAuto},
	{"CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS i2 ON t (x)", noTx("CREATE INDEX CONCURRENTLY"), srvAuto},
	{"DROP INDEX CONCURRENTLY i", noTx("DROP INDEX CONCURRENTLY"), srvAuto},
	{"DROP INDEX CONCURRENTLY IF EXISTS i", noTx("DROP INDEX CONCURRENTLY"), srvAuto},
	{"ALTER TABLE p DETACH PARTITION c CONCURRENTLY", noTx("ALTER TABLE ... DETACH CONCURRENTLY"), srvAuto},
	{"ALTER TABLE IF EXISTS ONLY p DETACH PARTITION public.c CONCURRENTLY;", noTx("ALTER TABLE ... DETACH CONCURRENTLY"), srvAuto},
	{"CREATE SUBSCRIPTION s2 CONNECTION 'dbname=none' PUBLICATION p", noTx("CREATE SUBSCRIPTION ... WITH (create_slot = true)"), srvAuto},
	{"CREATE SUBSCRIPTION s2 CONNECTION 'dbname=none' PUBLICATION p WITH (enabled = false, create_slot)",
		noTx("CREATE SUBSCRIPTION ... WITH (create_slot = true)"), srvAuto},
	{"CREATE SUBSCRIPTION s2 CONNECTION 'dbname=none' PUBLICATION p WITH (connect = true)",
		noTx("CREATE SUBSCRIPTION ... WITH (create_slot = true)"), srvAuto},
	{"DROP SUBSCRIPTION s", noTx("DROP SUBSCRIPTION"), srvAuto},
	{"DROP SUBSCRIPTION IF EXISTS s CASCADE", noTx("DROP SUBSCRIPTION"), srvAuto},
	// ALTER SUBSCRIPTION … REFRESH is refused only on an enabled subscription, which
	// needs a publisher: checked against the source, not the server.
	{"ALTER SUBSCRIPTION s REFRESH PUBLICATION", noTx("ALTER SUBSCRIPTION ... REFRESH"), srvSkip},
	{"ALTER SUBSCRIPTION s REFRESH PUBLICATION WITH (copy_data = false)", noTx("ALTER SUBSCRIPTION ... REFRESH"), srvSkip},
	{"ALTER SUBSCRIPTION s SET PUBLICATION p", noTx("ALTER SUBSCRIPTION with refresh"), srvSkip},
	{"ALTER SUBSCRIPTION s ADD PUBLICATION p2 WITH (copy_data = false)", noTx("ALTER SUBSCRIPTION with refresh"), srvSkip},
	{"DISCARD ALL", noTx("DISCARD ALL"), srvAuto},
	{"discard all;", noTx("DISCARD ALL"), srvAuto},

	// ... and near misses that can.
	{"ANALYZE", other, srvAuto},
	{"ANALYZE t", other, srvAuto},
	{"CLUSTER t", other, srvError}, // t has no clustered index
	{"CLUSTER t USING i", other, srvAuto},
	{"CLUSTER VERBOSE t USING i", other, srvAuto},
	{"CLUSTER i ON t", other, srvAuto},
	{"REINDEX TABLE t", other, srvAuto},
	{"REINDEX INDEX i", other, srvAuto},
	{"REINDEX (VERBOSE) TABLE t", other, srvAuto},
	{"REINDEX (CONCURRENTLY false) TABLE t", other, srvAuto},
	{"CREATE INDEX i2 ON t (x)", other, srvAuto},
	{"CREATE INDEX concurrently_i ON t (x)", other, srvAuto},
	{"CREATE TABLE \"vacuum\" (x int)", other, srvAuto},
	{"DROP INDEX i", other, srvAuto},
	{"DISCARD PLANS", other, srvAuto},
	{"DISCARD TEMP", other, srvAuto},
	{"ALTER DATABASE d SET work_mem = '1MB'", other, srvError}, // no database d
	{"ALTER DATABASE d SET tablespace TO pg_default", other, srvError},
	{"ALTER DATABASE d WITH CONNECTION LIMIT 5 TABLESPACE pg_default", other, srvError},
	{"ALTER TABLE p DETACH PARTITION c", other, srvAuto},
	{"ALTER TABLE p DETACH PARTITION c FINALIZE", other, srvError}, // not pending detach
	{"CREATE SUBSCRIPTION s2 CONNECTION 'dbname=none' PUBLICATION p WITH (connect = false)", other, srvAuto},
	{"CREATE SUBSCRIPTION s2 CONNECTION 'dbname=none' PUBLICATION p WITH (\"create_slot\" = 'false')", other, srvError},
	{"ALTER SUBSCRIPTION s SET PUBLICATION p WITH (refresh = false)", other, srvAuto},
	{"ALTER SUBSCRIPTION s SET (synchronous_commit = on)", other, srvAuto},
	{"REFRESH MATERIALIZED VIEW CONCURRENTLY mv", other, srvAuto},
	{"ALTER TYPE e ADD VALUE 'b'", other, srvAuto},
	{"SELECT 'VACUUM'", other, srvAuto},
	{"CREATE DATABASEx", other, srvSyntax},

	// Everything else.
	{"SELECT 1", other, srvAuto},
	{"select 1 as end", other, srvAuto},
	{"WITH x AS (SELECT 1) SELECT * FROM x", other, srvAuto},
	{"(SELECT 1)", other, srvAuto},
	{"INSERT INTO t VALUES (1)", other, srvAuto},
	{"$1", other, srvSkip}, // a parameter in a simple query: an error
}

func TestClassify(t *testing.T) {
	for _, c := range classifyCases {
		t.Run(c.sql, func(t *testing.T) {
			want := c.want
			want.Text, want.Start, want.End = c.sql, 0, len(c.sql)
			if got := Classify(c.sql); got != want {
				t.Errorf("Classify(%q)\n got %+v\nwant %+v", c.sql, got, want)
			}
		})
	}
}

func TestTxModesString(t *testing.T) {
	for _, c := range []struct {
		m    TxModes
		want string
	}{
		{TxModes{}, ""},
		{TxModes{Isolation: Serializable}, "ISOLATION LEVEL SERIALIZABLE"},
		{TxModes{ReadOnly: No}, "READ WRITE"},
		{TxModes{Isolation: ReadCommitted, ReadOnly: Yes, Deferrable: No}, "ISOLATION LEVEL READ COMMITTED, READ ONLY, NOT DEFERRABLE"},
		{TxModes{Deferrable: Yes}, "DEFERRABLE"},
	} {
		if got := c.m.String(); got != c.want {
			t.Errorf("%+v.String() = %q, want %q", c.m, got, c.want)
		}
		// The normalised form reads back as the same modes.
		if c.want != "" {
			if got := Classify("BEGIN " + c.want).Modes; got != c.m {
				t.Errorf("BEGIN %s: modes %+v, want %+v", c.want, got, c.m)
			}
		}
	}
}

func TestKeyword(t *testing.T) {
	for sql, want := range map[string]string{
		"":                      "",
		"  begin;":              "begin",
		"/* x /* y */ */Commit": "Commit",
		"-- c\nSELECT 1":        "SELECT",
		"(SELECT 1)":            "",
		`"BEGIN"`:               "",
		"E'x'":                  "",
		"U&\"x\"":               "",
		"u":                     "u",
		"vacuum$x":              "vacuum$x",
	} {
		if got := Keyword(sql); got != want {
			t.Errorf("Keyword(%q) = %q, want %q", sql, got, want)
		}
	}
}

func TestKindString(t *testing.T) {
	for k := Other; k <= NoTxBlock; k++ {
		if s := k.String(); s == "" || strings.HasPrefix(s, "Kind(") {
			t.Errorf("Kind %d has no name", k)
		}
	}
	if s := Kind(200).String(); s != "Kind(200)" {
		t.Errorf("Kind(200).String() = %q", s)
	}
}

// TestClassifyFastPathAllocs: classifying an ordinary statement does not allocate.
func TestClassifyFastPathAllocs(t *testing.T) {
	for _, sql := range []string{
		"SELECT * FROM t WHERE id = $1",
		"INSERT INTO t (a, b) VALUES ($1, $2) RETURNING id",
		"BEGIN ISOLATION LEVEL SERIALIZABLE, READ ONLY",
		"COMMIT",
		"ROLLBACK TO SAVEPOINT sp",
		"SET search_path = app, public",
		"CREATE TABLE t (x int)",
		"CREATE INDEX CONCURRENTLY i ON t (x)",
	} {
		if n := testing.AllocsPerRun(100, func() { Classify(sql) }); n != 0 {
			t.Errorf("Classify(%q): %v allocations", sql, n)
		}
	}
}

func TestWords(t *testing.T) {
	for _, tc := range []struct {
		sql  string
		max  int
		want []string
	}{
		{"/* c */ SET -- x\n LOCAL a = 1", 2, []string{"SET", "LOCAL"}},
		{`DECLARE "with" CURSOR WITH HOLD FOR SELECT`, 12, []string{"DECLARE", `"with"`, "CURSOR", "WITH", "HOLD", "FOR", "SELECT"}},
		{"", 3, nil},
	} {
		if got := Words(tc.sql, tc.max); !slices.Equal(got, tc.want) {
			t.Errorf("Words(%q, %d) = %q, want %q", tc.sql, tc.max, got, tc.want)
		}
	}
}
