package sqllex

import (
	"strings"
	"testing"
	"time"
)

var benchStatements = []struct{ name, sql string }{
	{"select", "SELECT id, name, email FROM users WHERE id = $1"},
	{"insert", "INSERT INTO orders (user_id, total, note) VALUES ($1, $2, 'it''s; fine') RETURNING id"},
	{"begin", "BEGIN ISOLATION LEVEL SERIALIZABLE, READ ONLY"},
	{"commit", "COMMIT"},
	{"savepoint", "SAVEPOINT pgx_0"},
	{"set", "SET search_path = app, public"},
	{"create-index", "CREATE INDEX CONCURRENTLY users_email ON users (email)"},
	{"multi", "BEGIN; INSERT INTO t VALUES (1, 'a;b'); UPDATE t SET x = x + 1 WHERE id = 1; COMMIT;"},
	{"function", `CREATE FUNCTION add(a int, b int) RETURNS int LANGUAGE plpgsql AS $$
BEGIN
	-- add them; carefully
	RETURN a + b;
END
$$; SELECT add(1, 2)`},
}

var sink int

// BenchmarkSplit reports the cost of Split and, as x-naive, its ratio to a naive
// strings.Split on ';' of the same input measured in the same run.
func BenchmarkSplit(b *testing.B) {
	for _, bs := range benchStatements {
		b.Run(bs.name, func(b *testing.B) {
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				sink += len(Split(bs.sql))
			}
			b.StopTimer()
			reportRatio(b, func() { sink += len(strings.Split(bs.sql, ";")) })
		})
	}
}

// BenchmarkClassify reports the cost of Classify and, as x-naive, its ratio to
// upper-casing the first word and comparing it, measured in the same run.
func BenchmarkClassify(b *testing.B) {
	for _, bs := range benchStatements {
		b.Run(bs.name, func(b *testing.B) {
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				sink += int(Classify(bs.sql).Kind)
			}
			b.StopTimer()
			reportRatio(b, func() {
				if w, _, _ := strings.Cut(bs.sql, " "); strings.ToUpper(w) == "BEGIN" {
					sink++
				}
			})
		})
	}
}

func BenchmarkKeyword(b *testing.B) {
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		sink += len(Keyword("  /* c */ SELECT 1"))
	}
}

// reportRatio times b.N runs of baseline and reports the benchmark's time over it.
func reportRatio(b *testing.B, baseline func()) {
	elapsed := b.Elapsed()
	start := time.Now()
	for i := 0; i < b.N; i++ {
		baseline()
	}
	if base := time.Since(start); base > 0 {
		b.ReportMetric(float64(elapsed)/float64(base), "x-naive")
	}
}
