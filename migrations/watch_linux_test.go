//go:build linux

package migrations

import (
	"os"
	"path/filepath"
	"testing"
)

// watching reports whether the last check left w's guard watching, so a test of
// changes exercises the guard and not only the listing.
func watching[T any](w *guarded[T]) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.g != nil
}

// engaged is watching for a Dir.
func engaged(d *Dir) bool { return watching(d.cache) }

// mkdirIn makes dir/name and its parents.
func mkdirIn(t *testing.T, dir, name string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Join(dir, name), 0o755); err != nil {
		t.Fatal(err)
	}
}

// localTempDir is t.TempDir, which must be on a filesystem the guard trusts for the
// test to be about the guard.
func localTempDir(t *testing.T) string {
	dir := t.TempDir()
	if !watchable(dir) {
		t.Skipf("%s is on a filesystem without local change events (set TMPDIR to a local disk or tmpfs)", dir)
	}
	return dir
}

// TestGuardSeesEveryChange makes, one after another with no pause, the changes a
// developer or an editor makes to a Prisma layout (a subdirectory per migration) and
// to a schema dump, and checks that the very next Hash sees each while the guard stays
// engaged, and that with no change the hash is the same.
func TestGuardSeesEveryChange(t *testing.T) {
	t.Parallel()
	dir := localTempDir(t)
	mkdir := func(name string) { mkdirIn(t, dir, name) }
	mkdir("20240101000001_users")
	writeFile(t, dir, "20240101000001_users/migration.sql", "CREATE TABLE users (id int);\n")
	d, err := OpenFormat(dir, Prisma)
	if err != nil {
		t.Fatal(err)
	}
	prev := hashOf(t, d, 15, 1)
	if !engaged(d) {
		t.Fatalf("the guard is not watching %s (a tmpfs or local disk)", dir)
	}
	steps := []struct {
		name   string
		change func()
	}{
		{"edit in a subdirectory", func() {
			writeFile(t, dir, "20240101000001_users/migration.sql", "CREATE TABLE users (id bigint);\n")
		}},
		{"edit in place, same size", func() {
			writeFile(t, dir, "20240101000001_users/migration.sql", "CREATE TABLE users (id bigin2);\n")
		}},
		{"editor's save: write a new file, rename it over the old", func() {
			writeFile(t, dir, "20240101000001_users/.migration.sql.swp", "CREATE TABLE users (id text);\n")
			if err := os.Rename(filepath.Join(dir, "20240101000001_users/.migration.sql.swp"),
				filepath.Join(dir, "20240101000001_users/migration.sql")); err != nil {
				t.Fatal(err)
			}
		}},
		{"add a migration", func() {
			mkdir("20240101000002_posts")
			writeFile(t, dir, "20240101000002_posts/migration.sql", "CREATE TABLE posts (id int);\n")
		}},
		{"edit the new migration", func() {
			writeFile(t, dir, "20240101000002_posts/migration.sql", "CREATE TABLE posts (id bigint);\n")
		}},
		{"remove a migration", func() {
			if err := os.RemoveAll(filepath.Join(dir, "20240101000002_posts")); err != nil {
				t.Fatal(err)
			}
		}},
	}
	for _, s := range steps {
		s.change()
		got := hashOf(t, d, 15, 1)
		if got == prev {
			t.Errorf("%s: the hash did not change", s.name)
		}
		if !engaged(d) {
			t.Errorf("%s: the guard stopped watching", s.name)
		}
		if again := hashOf(t, d, 15, 1); again != got {
			t.Errorf("%s: with no change the hash went from %.12s to %.12s", s.name, got, again)
		}
		prev = got
	}

	dump := filepath.Join(t.TempDir(), "schema.sql")
	if err := os.WriteFile(dump, []byte("CREATE TABLE a (id int);\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := Open(dump)
	if err != nil {
		t.Fatal(err)
	}
	before := hashOf(t, f, 15, 1)
	if err := os.WriteFile(dump, []byte("CREATE TABLE b (id int);\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if hashOf(t, f, 15, 1) == before || !engaged(f) {
		t.Error("a schema dump's edit was not seen by its guard")
	}
}

// TestGuardOffForSymlinks: a migration that is a symbolic link changes where no event
// is raised in the directory, so the guard steps aside and every Hash lists and stats.
func TestGuardOffForSymlinks(t *testing.T) {
	t.Parallel()
	dir, elsewhere := t.TempDir(), t.TempDir()
	writeFile(t, elsewhere, "target.sql", "CREATE TABLE users (id int);\n")
	if err := os.Symlink(filepath.Join(elsewhere, "target.sql"), filepath.Join(dir, "001_users.up.sql")); err != nil {
		t.Fatal(err)
	}
	d, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	before := hashOf(t, d, 15, 1)
	if engaged(d) {
		t.Fatal("the guard watches a directory whose migration is a symbolic link")
	}
	writeFile(t, elsewhere, "target.sql", "CREATE TABLE users (id bigint);\n")
	if hashOf(t, d, 15, 1) == before {
		t.Error("an edit of a symbolic link's target was not seen")
	}
}

// TestCommandGuardSeesEveryChange does the same for a --migrate-cmd's watched paths: a
// directory walked recursively, one file, and a glob.
func TestCommandGuardSeesEveryChange(t *testing.T) {
	t.Parallel()
	dir := localTempDir(t)
	mkdir := func(name string) { mkdirIn(t, dir, name) }
	mkdir("db/migrate/2024")
	mkdir("seeds")
	writeFile(t, dir, "db/migrate/2024/001_users.rb", "create_table :users\n")
	writeFile(t, dir, "schema.rb", "version 1\n")
	writeFile(t, dir, "seeds/a.sql", "INSERT INTO a VALUES (1);\n")
	c, err := NewCommand(CommandConfig{Command: "true", WorkDir: dir, Watch: []string{"db/migrate", "schema.rb", "seeds/*.sql"}})
	if err != nil {
		t.Fatal(err)
	}
	isEngaged := func() bool { return watching(c.cache) }
	prev := hashOf(t, c, 15, 1)
	if !isEngaged() {
		t.Fatalf("the guard is not watching %s", dir)
	}
	steps := []struct {
		name    string
		change  func()
		changes bool
	}{
		{"edit a nested file", func() { writeFile(t, dir, "db/migrate/2024/001_users.rb", "create_table :people\n") }, true},
		{"add a nested directory and file", func() {
			mkdir("db/migrate/2025")
			writeFile(t, dir, "db/migrate/2025/002_posts.rb", "create_table :posts\n")
		}, true},
		{"edit the new file", func() { writeFile(t, dir, "db/migrate/2025/002_posts.rb", "create_table :articles\n") }, true},
		{"edit the single file", func() { writeFile(t, dir, "schema.rb", "version 2\n") }, true},
		{"add a file the glob matches", func() { writeFile(t, dir, "seeds/b.sql", "INSERT INTO b VALUES (1);\n") }, true},
		{"add a file the glob does not match", func() { writeFile(t, dir, "seeds/notes.txt", "x\n") }, false},
		{"add a file in a hidden directory", func() {
			mkdir("db/migrate/.cache")
			writeFile(t, dir, "db/migrate/.cache/x.rb", "x\n")
		}, false},
		{"remove the nested directory", func() {
			if err := os.RemoveAll(filepath.Join(dir, "db/migrate/2025")); err != nil {
				t.Fatal(err)
			}
		}, true},
	}
	for _, s := range steps {
		s.change()
		got := hashOf(t, c, 15, 1)
		if (got != prev) != s.changes {
			t.Errorf("%s: hash changed = %v, want %v", s.name, got != prev, s.changes)
		}
		if !isEngaged() {
			t.Errorf("%s: the guard stopped watching", s.name)
		}
		if again := hashOf(t, c, 15, 1); again != got {
			t.Errorf("%s: with no change the hash went from %.12s to %.12s", s.name, got, again)
		}
		prev = got
	}

	wild, err := NewCommand(CommandConfig{Command: "true", WorkDir: dir, Watch: []string{"db/*/2024"}})
	if err != nil {
		t.Fatal(err)
	}
	before := hashOf(t, wild, 15, 1)
	if watching(wild.cache) {
		t.Error("the guard watches a pattern with a wildcard in its directory part")
	}
	writeFile(t, dir, "db/migrate/2024/001_users.rb", "create_table :users\n")
	if hashOf(t, wild, 15, 1) == before {
		t.Error("an edit under a wildcard directory was not seen")
	}
}
