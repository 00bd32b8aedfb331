package testpg

import (
	"fmt"
	"strings"
)

// LargeSchema is the benchmarks' large fixture: an application schema of 150 tables
// in 15 migrations of 10, each table with a foreign key to the one before, two
// indexes, a comment and 50 rows; a view and a plpgsql function per migration.
func LargeSchema() []string {
	files := make([]string, 15)
	for f := range files {
		var b strings.Builder
		for i := f * 10; i < f*10+10; i++ {
			ref := ""
			if i > 0 {
				ref = fmt.Sprintf(", parent bigint REFERENCES t%03d (id)", i-1)
			}
			fmt.Fprintf(&b, "CREATE TABLE t%03d (id bigserial PRIMARY KEY, name text NOT NULL, email text, created timestamptz NOT NULL DEFAULT now(), n int, data jsonb%s);\n", i, ref)
			fmt.Fprintf(&b, "CREATE INDEX t%03d_name ON t%03d (name);\nCREATE UNIQUE INDEX t%03d_email ON t%03d (email);\n", i, i, i, i)
			fmt.Fprintf(&b, "COMMENT ON TABLE t%03d IS 'table %d; generated';\n", i, i)
			fmt.Fprintf(&b, "INSERT INTO t%03d (name, email, n) SELECT 'row ' || g, 'u' || g || '@t%03d', g FROM generate_series(1, 50) g;\n", i, i)
		}
		fmt.Fprintf(&b, "CREATE VIEW v%02d AS SELECT id, name FROM t%03d WHERE n > 10;\n", f, f*10)
		fmt.Fprintf(&b, "CREATE FUNCTION f%02d(x int) RETURNS int LANGUAGE plpgsql AS $$\nBEGIN\n  IF x > 0 THEN\n    RETURN x + 1;\n  END IF;\n  RETURN 0;\nEND;\n$$;\n", f)
		files[f] = b.String()
	}
	return files
}
