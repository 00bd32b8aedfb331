package migrations

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/pgtestproxy/pgtestproxy/internal/testpg"
)

// TestSeedsAfterMigrations: seed files run in order after the migrations, and an edit
// to one gives a new hash.
func TestSeedsAfterMigrations(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	writeFile(t, dir, "001_users.up.sql", "CREATE TABLE users (id int PRIMARY KEY, name text);")
	seeds := t.TempDir()
	writeFile(t, seeds, "people.sql", "INSERT INTO users VALUES (1, 'ann'), (2, 'bob');\n")
	writeFile(t, seeds, "more.sql", "\\restrict x\nCOPY users (id, name) FROM stdin;\n3\tcy\n\\.\nUPDATE users SET name = upper(name) WHERE id = 1;\n")
	d, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	var steps = []Step{d}
	for _, name := range []string{"people.sql", "more.sql"} { // more.sql needs people.sql's row 1
		s, err := OpenSeed(filepath.Join(seeds, name))
		if err != nil {
			t.Fatal(err)
		}
		steps = append(steps, s)
	}
	seq := NewSequence(steps...)
	h := hashOf(t, seq, 15, 1)
	url, _ := testpg.NewDatabase(t)
	if err := seq.Migrate(t.Context(), url, h); err != nil {
		t.Fatal(err)
	}
	if n := queryInt(t, url, "SELECT count(*) FROM users WHERE name IN ('ANN', 'bob', 'cy')"); n != 3 {
		t.Fatalf("%d of the 3 seeded rows are there", n)
	}
	desc := seq.Describe()
	for _, want := range []string{"golang-migrate " + dir, "seed " + filepath.Join(seeds, "people.sql"), "then seed " + filepath.Join(seeds, "more.sql")} {
		if !strings.Contains(desc, want) {
			t.Errorf("Describe() = %q, missing %q", desc, want)
		}
	}
	writeFile(t, seeds, "people.sql", "INSERT INTO users VALUES (1, 'ann'), (2, 'bo');\n")
	if hashOf(t, seq, 15, 1) == h {
		t.Fatal("editing a seed file kept the hash")
	}
}
