package sqllex

import "testing"

func addSeeds(f *testing.F) {
	for _, c := range splitCases {
		f.Add(c.sql)
	}
	for _, c := range classifyCases {
		f.Add(c.sql)
	}
	for _, s := range []string{
		"E'", "U&'", "U&\"", "$", "$$", "$a", "$a$", "$1$a$", "'a'\n", "'a'\n'", "'a' --\n'b",
		"/*", "/*/", "*/", "--", "-", "e", "u&", "1e", "1.", ".", "\\", "\x00", "\xff", "BEGIN\xff",
		"SAVEPOINT U&\"\\", "COMMIT PREPARED E'\\u", "COMMIT PREPARED E'\\U0010FFFF'",
		"LISTEN", "UNLISTEN *", "UNLISTEN *;", "NOTIFY a,", "NOTIFY a, U&'\\0041' UESCAPE '!'", "NOTIFY \"\"",
		"REINDEX (", "REINDEX (CONCURRENTLY", "CREATE SUBSCRIPTION s WITH (", "ALTER DATABASE d WITH TABLESPACE",
	} {
		f.Add(s)
	}
}

// FuzzSplit: Split never panics, its pieces and separators give the input back, and
// every piece is one statement that Classify classifies alone as Split did, also
// with a ';' after it.
func FuzzSplit(f *testing.F) {
	addSeeds(f)
	f.Fuzz(func(t *testing.T, sql string) {
		pieces := Split(sql)
		checkPieces(t, sql, pieces)
		for _, st := range pieces {
			if again := Split(st.Text); len(again) != 1 {
				t.Fatalf("piece %q of %q splits into %d", st.Text, sql, len(again))
			}
			semi := Classify(st.Text + ";")
			semi.Text, semi.Start, semi.End = st.Text, st.Start, st.End
			if semi != st {
				t.Fatalf("Classify(%q) = %+v, but with ';' %+v", st.Text, st, semi)
			}
			if st.Kind != Other && st.Kind != Empty && Keyword(st.Text) == "" {
				t.Fatalf("%q is %v without a keyword", st.Text, st.Kind)
			}
			if (st.Tag != "") != (st.Kind >= Begin && st.Kind <= SetTransaction || st.Kind >= Listen) {
				t.Fatalf("%q: kind %v with tag %q", st.Text, st.Kind, st.Tag)
			}
		}
	})
}
