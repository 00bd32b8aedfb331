package proxy

import "testing"

// onCommitCases are sequences with temporary tables created ON COMMIT DELETE ROWS or
// ON COMMIT DROP, whose actions a plain server carries out at every commit: the
// client's COMMIT and the end of each autocommit statement.
var onCommitCases = []struct {
	name string
	sc   script
}{
	{"on commit delete rows", script{
		q("CREATE TEMP TABLE d (v int) ON COMMIT DELETE ROWS"),
		q("INSERT INTO d VALUES (1)"), q("SELECT count(*) FROM d"),
		q("INSERT INTO d VALUES (2); SELECT count(*) FROM d"), q("SELECT count(*) FROM d"),
		q("INSERT INTO d VALUES (3) RETURNING v"), q("SELECT count(*) FROM d"),
		q("BEGIN"), q("INSERT INTO d VALUES (4)"), q("SELECT count(*) FROM d"), q("COMMIT"), q("SELECT count(*) FROM d"),
		run1("INSERT INTO d VALUES (5)"), run1("SELECT count(*) FROM d"),
		ext(parse("", "INSERT INTO d VALUES (6)"), bind("", ""), execM(""), parse("", "SELECT count(*) FROM d"),
			bind("", ""), execM(""), syncM()),
		q("BEGIN READ ONLY"), q("INSERT INTO d VALUES (7)"), q("COMMIT"), q("SELECT count(*) FROM d"),
		q("BEGIN"), q("INSERT INTO d VALUES (8)"), q("COMMIT AND CHAIN"), q("SELECT count(*) FROM d"), q("COMMIT"),
		q("BEGIN"), run1("INSERT INTO d VALUES (9)"), run1("COMMIT"), q("SELECT count(*) FROM d"),
		q("BEGIN; INSERT INTO d VALUES (10); COMMIT; SELECT count(*) FROM d"),
		q("INSERT INTO d VALUES (11); COMMIT; SELECT count(*) FROM d"),
		q("BEGIN"), q("INSERT INTO d VALUES (12)"), q("ROLLBACK"), q("SELECT count(*) FROM d"),
	}},
	{"on commit delete rows: names and replacements", script{
		q(`CREATE GLOBAL TEMPORARY TABLE "Mixed ""Case""" (v int) ON COMMIT DELETE ROWS; INSERT INTO "Mixed ""Case""" VALUES (1)`),
		q(`INSERT INTO "Mixed ""Case""" VALUES (1)`), q(`SELECT count(*) FROM "Mixed ""Case"""`),
		q("CREATE TABLE pg_temp.e (v int, w text DEFAULT 'on commit drop') ON COMMIT DELETE ROWS"),
		q("INSERT INTO e VALUES (1)"), q("SELECT count(*) FROM e"),
		q("CREATE TEMP TABLE keep (v int) ON COMMIT PRESERVE ROWS"), q("INSERT INTO keep VALUES (1)"), q("SELECT count(*) FROM keep"),
		q("CREATE TEMP TABLE IF NOT EXISTS e (v int)"), q("INSERT INTO e VALUES (2)"), q("SELECT count(*) FROM e"),
		q("DROP TABLE e"), q("CREATE TEMP TABLE e (v int)"), q("INSERT INTO e VALUES (3)"), q("SELECT count(*) FROM e"),
		q("BEGIN"), q("DROP TABLE keep"), q("CREATE TEMP TABLE keep (v int) ON COMMIT DELETE ROWS"), q("ROLLBACK"),
		q("INSERT INTO keep VALUES (2)"), q("SELECT count(*) FROM keep"),
		q("CREATE TEMP TABLE ctas ON COMMIT DELETE ROWS AS SELECT 1 AS v"), q("SELECT count(*) FROM ctas"),
		q("CREATE TEMP TABLE parent (id int PRIMARY KEY) ON COMMIT DELETE ROWS"),
		q("CREATE TEMP TABLE child (id int REFERENCES parent) ON COMMIT DELETE ROWS"),
		q("INSERT INTO parent VALUES (1); INSERT INTO child VALUES (1)"), q("SELECT count(*) FROM child"),
	}},
	{"on commit drop", script{
		q("BEGIN"), q("CREATE TEMP TABLE x (v int) ON COMMIT DROP"), q("INSERT INTO x VALUES (1)"),
		q("SELECT count(*) FROM x"), q("COMMIT"), q("SELECT count(*) FROM x"),
		q("CREATE TEMP TABLE y ON COMMIT DROP AS SELECT 1 AS v"), q("SELECT * FROM y"),
		q("CREATE TEMP TABLE y (v int) ON COMMIT DROP; INSERT INTO y VALUES (1); SELECT count(*) FROM y"), q("SELECT count(*) FROM y"),
		run1("CREATE TEMP TABLE z (v int) ON COMMIT DROP"), run1("SELECT 1 FROM z"),
		q("BEGIN"), q("CREATE TEMP TABLE w (v int) ON COMMIT DROP"), q("ROLLBACK"),
		q("CREATE TEMP TABLE w (v int)"), q("INSERT INTO w VALUES (1)"), q("SELECT count(*) FROM w"),
		q("BEGIN; CREATE TEMP TABLE v1 (v int) ON COMMIT DROP; COMMIT; SELECT * FROM v1"),
		q("CREATE TEMP TABLE u (v int) ON COMMIT DROP; COMMIT; SELECT * FROM u"),
		q("CREATE TEMP TABLE u (v int) ON COMMIT DROP; ROLLBACK; SELECT * FROM u"),
		q("BEGIN"), q("CREATE TEMP TABLE dep (v int) ON COMMIT DROP"), q("CREATE TEMP VIEW depv AS SELECT * FROM dep"),
		q("COMMIT"), q("SELECT * FROM depv"),
		q("BEGIN"), q(`CREATE LOCAL TEMP TABLE "a""b" (v int) ON COMMIT DROP`), q("COMMIT AND CHAIN"),
		q(`SELECT * FROM "a""b"`), q("ROLLBACK"),
		q("CREATE TABLE pg_temp.s (v int) ON COMMIT DROP"), q("SELECT * FROM s"),
		q("BEGIN"), q("CREATE TEMP TABLE f (v int) ON COMMIT DROP"), q("SELECT 1/0"), q("COMMIT"), q("SELECT * FROM f"),
	}},
}

// Temporary tables' ON COMMIT actions happen at the client's commits, as on a plain
// server.
func TestTxTempTablesOnCommit(t *testing.T) {
	t.Parallel()
	env := newDiffEnv(t)
	for _, tc := range onCommitCases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			env.compare(t, tc.sc)
		})
	}
}
