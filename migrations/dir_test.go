package migrations

import (
	"io/fs"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"testing/fstest"
	"time"
)

func writeFile(t *testing.T, dir, name, content string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func hashOf(t *testing.T, d Step, major, catalog int) string {
	t.Helper()
	h, err := d.Hash(t.Context(), major, catalog)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// TestHashTracksWhatUpMigrationsApply walks one directory through the edits a developer
// makes and checks which of them give a new hash.
func TestHashTracksWhatUpMigrationsApply(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	writeFile(t, dir, "001_users.up.sql", "CREATE TABLE users (id int);\n")
	writeFile(t, dir, "001_users.down.sql", "DROP TABLE users;\n")
	d, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	prev := hashOf(t, d, 15, 1)
	steps := []struct {
		name    string
		change  func()
		changes bool
	}{
		{"touch mtime", func() {
			later := time.Now().Add(time.Hour)
			if err := os.Chtimes(filepath.Join(dir, "001_users.up.sql"), later, later); err != nil {
				t.Fatal(err)
			}
		}, false},
		{"edit down file", func() { writeFile(t, dir, "001_users.down.sql", "DROP TABLE users CASCADE;\n") }, false},
		{"add unrelated file", func() { writeFile(t, dir, "README.md", "notes\n") }, false},
		{"edit up file", func() { writeFile(t, dir, "001_users.up.sql", "CREATE TABLE users (id bigint);\n") }, true},
		{"edit up file, same size", func() { writeFile(t, dir, "001_users.up.sql", "CREATE TABLE users (id bigin2);\n") }, true},
		{"add up file", func() { writeFile(t, dir, "002_posts.up.sql", "CREATE TABLE posts (id int);\n") }, true},
		{"rename up file", func() {
			if err := os.Rename(filepath.Join(dir, "002_posts.up.sql"), filepath.Join(dir, "002_articles.up.sql")); err != nil {
				t.Fatal(err)
			}
		}, true},
		{"remove up file", func() { os.Remove(filepath.Join(dir, "002_articles.up.sql")) }, true},
	}
	for _, s := range steps {
		s.change()
		got := hashOf(t, d, 15, 1)
		if (got != prev) != s.changes {
			t.Errorf("%s: hash changed = %v, want %v", s.name, got != prev, s.changes)
		}
		prev = got
	}
	if hashOf(t, d, 16, 1) == prev {
		t.Error("server major version does not change the hash")
	}
	if hashOf(t, d, 15, 2) == prev {
		t.Error("catalog version does not change the hash")
	}
}

func TestHashDuplicateVersion(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	writeFile(t, dir, "001_a.up.sql", "SELECT 1;")
	writeFile(t, dir, "1_b.up.sql", "SELECT 2;")
	d, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.Hash(t.Context(), 15, 1); err == nil {
		t.Fatal("two up files with one version hashed without error")
	}
}

func TestOpenNotADirectory(t *testing.T) {
	t.Parallel()
	if _, err := Open(filepath.Join(t.TempDir(), "missing")); err == nil {
		t.Fatal("Open of a missing directory succeeded")
	}
}

// countingFS counts the files opened for reading (directory listings aside).
type countingFS struct {
	fstest.MapFS
	opens atomic.Int32
}

func (c *countingFS) Open(name string) (fs.File, error) {
	if name != "." {
		c.opens.Add(1)
	}
	return c.MapFS.Open(name)
}

func (c *countingFS) ReadFile(name string) ([]byte, error) {
	c.opens.Add(1)
	return c.MapFS.ReadFile(name)
}

func (c *countingFS) ReadDir(name string) ([]fs.DirEntry, error) { return c.MapFS.ReadDir(name) }

func TestHashReadsContentsOnlyWhenListingChanges(t *testing.T) {
	t.Parallel()
	mod := time.Now()
	cfs := &countingFS{MapFS: fstest.MapFS{
		"001_a.up.sql": {Data: []byte("CREATE TABLE a (id int);"), ModTime: mod},
		"002_b.up.sql": {Data: []byte("CREATE TABLE b (id int);"), ModTime: mod},
	}}
	d, err := OpenFS(cfs, ".")
	if err != nil {
		t.Fatal(err)
	}
	first := hashOf(t, d, 15, 1)
	read := cfs.opens.Load()
	if read != 2 {
		t.Fatalf("first Hash opened %d files, want 2", read)
	}
	for range 100 {
		if hashOf(t, d, 15, 1) != first {
			t.Fatal("hash changed without a change")
		}
	}
	if n := cfs.opens.Load(); n != read {
		t.Fatalf("unchanged listing re-read contents: %d opens, want %d", n, read)
	}
	cfs.MapFS["002_b.up.sql"] = &fstest.MapFile{Data: []byte("CREATE TABLE b (id bigint);"), ModTime: mod.Add(time.Second)}
	if hashOf(t, d, 15, 1) == first {
		t.Fatal("edited file did not change the hash")
	}
	if n := cfs.opens.Load(); n != read+2 {
		t.Fatalf("changed listing: %d opens, want %d", n, read+2)
	}
}

func TestLineAt(t *testing.T) {
	t.Parallel()
	data := []byte("ab\nçé\nxyz")
	for pos, want := range map[int]int{1: 1, 3: 1, 4: 2, 6: 2, 7: 3, 9: 3} {
		if got := lineAt(data, pos); got != want {
			t.Errorf("lineAt(%d) = %d, want %d", pos, got, want)
		}
	}
}
