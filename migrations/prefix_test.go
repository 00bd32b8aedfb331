package migrations

import (
	"path/filepath"
	"testing"
)

// TestPrefixHashes: each prefix hash is the hash of a directory holding only those
// files (so a prefix template is the template of that directory), the last is the
// hash itself, Flyway's repeatables are not counted as ordered, seed files add one
// prefix each, and a dump or a command has none.
func TestPrefixHashes(t *testing.T) {
	t.Parallel()
	files := []string{"V1__a.sql", "V2__b.sql", "V10__c.sql", "R__views.sql"}
	dir := t.TempDir()
	for _, name := range files {
		writeFile(t, dir, name, "CREATE TABLE "+name[:len(name)-4]+" (id int);")
	}
	d, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	h := hashOf(t, d, 15, 2)
	prefixes, ordered, err := d.PrefixHashes(h)
	if err != nil {
		t.Fatal(err)
	}
	if len(prefixes) != 4 || prefixes[3] != h || ordered != 3 {
		t.Fatalf("PrefixHashes = %d hashes (last is the hash: %v), %d ordered; want 4, true, 3", len(prefixes), prefixes[len(prefixes)-1] == h, ordered)
	}
	for k := 1; k < 4; k++ { // V10 sorts after V2, so a prefix of k files is the first k in version order
		sub := t.TempDir()
		for _, name := range files[:k] {
			writeFile(t, sub, name, "CREATE TABLE "+name[:len(name)-4]+" (id int);")
		}
		sd, err := OpenFormat(sub, Flyway)
		if err != nil {
			t.Fatal(err)
		}
		if got := hashOf(t, sd, 15, 2); got != prefixes[k-1] {
			t.Errorf("prefix %d = %.12s, want the hash of a directory of %v: %.12s", k, prefixes[k-1], files[:k], got)
		}
	}

	seed := filepath.Join(t.TempDir(), "seed.sql")
	writeFile(t, filepath.Dir(seed), "seed.sql", "INSERT INTO a VALUES (1);")
	s, err := OpenSeed(seed)
	if err != nil {
		t.Fatal(err)
	}
	seq := NewSequence(d, s)
	sh := hashOf(t, seq, 15, 2)
	sp, sordered, err := seq.PrefixHashes(sh)
	if err != nil {
		t.Fatal(err)
	}
	if len(sp) != 5 || sp[4] != sh || sordered != 3 || sp[3] != hashOf(t, NewSequence(d), 15, 2) {
		t.Fatalf("sequence prefixes: %d (%d ordered), want 5 (3), the last the hash and the 4th that of the migrations alone", len(sp), sordered)
	}

	if p, _, err := s.PrefixHashes(hashOf(t, s, 15, 2)); err != nil || p != nil {
		t.Errorf("a script has prefixes %v (%v), want none", p, err)
	}
	cmd, err := NewCommand(CommandConfig{Command: "true"})
	if err != nil {
		t.Fatal(err)
	}
	cs := NewSequence(cmd, s)
	if p, _, err := cs.PrefixHashes(hashOf(t, cs, 15, 2)); err != nil || p != nil {
		t.Errorf("a command sequence has prefixes %v (%v), want none", p, err)
	}
}
