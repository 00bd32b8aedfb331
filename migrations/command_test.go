package migrations

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pgtestproxy/pgtestproxy/internal/pgerr"
	"github.com/pgtestproxy/pgtestproxy/internal/testpg"
)

// need returns the path of a tool the test runs; missing, it skips the test on a
// developer's machine and fails it in CI (CI=true).
func need(t *testing.T, install string, candidates ...string) string {
	t.Helper()
	for _, c := range candidates {
		if p, err := exec.LookPath(c); err == nil {
			return p
		}
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("%v not found: %s", candidates, install)
	}
	t.Skipf("%v not found: %s", candidates, install)
	return ""
}

func psqlPath(t *testing.T) string {
	t.Helper()
	debian, _ := filepath.Glob("/usr/lib/postgresql/*/bin/psql")
	return need(t, "apt-get install postgresql-client", append([]string{"psql"}, debian...)...)
}

func newCommand(t *testing.T, cfg CommandConfig) *Command {
	t.Helper()
	c, err := NewCommand(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestCommandShellScript: a shell script using psql, reaching the database through
// PG* variables and through DATABASE_URL.
func TestCommandShellScript(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	psql := psqlPath(t)
	url, name := testpg.NewDatabase(t)
	writeFile(t, dir, "migrate.sh", "set -e\n"+
		"test \"$PGDATABASE\" = "+name+"\n"+
		psql+" -v ON_ERROR_STOP=1 -q -c 'CREATE TABLE from_pgvars (db name)'\n"+
		"PGDATABASE=postgres "+psql+" -v ON_ERROR_STOP=1 -q -c 'INSERT INTO from_pgvars VALUES (current_database())' \"$DATABASE_URL\"\n")
	c := newCommand(t, CommandConfig{Command: "sh migrate.sh", Watch: []string{"migrate.sh"}, WorkDir: dir})
	if err := c.Migrate(t.Context(), url, hashOf(t, c, 15, 1)); err != nil {
		t.Fatal(err)
	}
	if n := queryInt(t, url, "SELECT count(*) FROM from_pgvars WHERE db = '"+name+"'"); n != 1 {
		t.Fatal("the script's row is missing")
	}
	if d := c.Describe(); !strings.Contains(d, `command "sh migrate.sh" watching migrate.sh (1 files)`) {
		t.Errorf("Describe() = %q", d)
	}
}

// TestCommandPythonTool: a migration runner in Python (psycopg2, from Debian).
func TestCommandPythonTool(t *testing.T) {
	t.Parallel()
	python := need(t, "apt-get install python3-psycopg2", "/usr/bin/python3")
	if out, err := exec.Command(python, "-c", "import psycopg2").CombinedOutput(); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("psycopg2: %v\n%s", err, out)
		}
		t.Skipf("psycopg2 missing (apt-get install python3-psycopg2): %s", out)
	}
	hook, err := filepath.Abs(filepath.Join("testdata", "hook"))
	if err != nil {
		t.Fatal(err)
	}
	c := newCommand(t, CommandConfig{Command: python + " migrate.py", Watch: []string{"migrate.py", "migrations"}, WorkDir: hook})
	url, _ := testpg.NewDatabase(t)
	if err := c.Migrate(t.Context(), url, hashOf(t, c, 15, 1)); err != nil {
		t.Fatal(err)
	}
	if n := queryInt(t, url, "SELECT count(*) FROM users u JOIN applied_migrations ON true WHERE u.name = 'ann'"); n != 2 {
		t.Fatalf("got %d rows, want ann and two applied migrations", n)
	}
}

// TestCommandFailure: a failing command's last output lines are in the error, under
// the SQLSTATE the output reports, else XX000.
func TestCommandFailure(t *testing.T) {
	t.Parallel()
	psql := psqlPath(t)
	tests := []struct {
		name, cmd, code string
		contains        []string
	}{
		{"psql error", "echo loading schema; " + psql + " -v ON_ERROR_STOP=1 -v VERBOSITY=verbose -c 'SELECT * FROM nope'",
			"42P01", []string{"loading schema", `relation "nope" does not exist`, "exit status 1"}},
		{"plain failure", "echo one; echo two >&2; exit 3", "XX000", []string{"one\ntwo", "exit status 3"}},
		{"reported code", "echo 'migration failed: SQLSTATE 23505'; exit 1", "23505", []string{"SQLSTATE 23505"}},
		{"no code in a psql error", "echo 'psql:x.sql:3: ERROR:  UNION types text and integer cannot be matched' >&2; exit 3", "XX000", []string{"UNION types"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c := newCommand(t, CommandConfig{Command: tt.cmd})
			url, _ := testpg.NewDatabase(t)
			err := c.Migrate(t.Context(), url, hashOf(t, c, 15, 1))
			if err == nil || pgerr.SQLState(err) != tt.code {
				t.Fatalf("err = %v (SQLSTATE %q), want SQLSTATE %s", err, pgerr.SQLState(err), tt.code)
			}
			for _, want := range append(tt.contains, tt.cmd) {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not mention %q", err, want)
				}
			}
		})
	}
}

// TestCommandTimeout: past its timeout the command's whole process group is killed.
func TestCommandTimeout(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	pidFile := filepath.Join(dir, "pid")
	c := newCommand(t, CommandConfig{Command: "sleep 60 & echo $! > " + pidFile + "; wait", Timeout: 300 * time.Millisecond})
	url, _ := testpg.NewDatabase(t)
	err := c.Migrate(t.Context(), url, hashOf(t, c, 15, 1))
	if !errors.Is(err, context.DeadlineExceeded) || pgerr.SQLState(err) != "57014" {
		t.Fatalf("err = %v, want a deadline with SQLSTATE 57014", err)
	}
	b, err := os.ReadFile(pidFile)
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for alive(pid) {
		if time.Now().After(deadline) {
			t.Fatalf("the command's child %d survived", pid)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// alive reports whether pid runs (a zombie does not).
func alive(pid int) bool {
	if syscall.Kill(pid, 0) != nil {
		return false
	}
	stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	fields := strings.Fields(string(stat[strings.LastIndexByte(string(stat), ')')+1:]))
	return len(fields) > 0 && fields[0] != "Z"
}

// TestCommandHashWatches: the hash follows the command and the watched files' names
// and contents, and nothing else.
func TestCommandHashWatches(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "db", "migrate"), 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, dir, "db/schema.rb", "v1")
	writeFile(t, dir, "db/migrate/001.rb", "a")
	writeFile(t, dir, "app.rb", "code")
	c := newCommand(t, CommandConfig{Command: "true", Watch: []string{"db/*.rb", "db/migrate"}, WorkDir: dir})
	prev := hashOf(t, c, 15, 1)
	steps := []struct {
		name    string
		change  func()
		changes bool
	}{
		{"unwatched edit", func() { writeFile(t, dir, "app.rb", "more code") }, false},
		{"touch", func() {
			later := time.Now().Add(time.Hour)
			if err := os.Chtimes(filepath.Join(dir, "db/schema.rb"), later, later); err != nil {
				t.Fatal(err)
			}
		}, false},
		{"cache in a watched dir", func() {
			if err := os.MkdirAll(filepath.Join(dir, "db/migrate/__pycache__"), 0o755); err != nil {
				t.Fatal(err)
			}
			writeFile(t, dir, "db/migrate/__pycache__/001.pyc", "compiled")
		}, false},
		{"glob file edit", func() { writeFile(t, dir, "db/schema.rb", "v2") }, true},
		{"new file in watched dir", func() { writeFile(t, dir, "db/migrate/002.rb", "b") }, true},
		{"new glob match", func() { writeFile(t, dir, "db/extra.rb", "c") }, true},
		{"rename in watched dir", func() {
			if err := os.Rename(filepath.Join(dir, "db/migrate/002.rb"), filepath.Join(dir, "db/migrate/003.rb")); err != nil {
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
		prev = got
	}
	other := newCommand(t, CommandConfig{Command: "true ", Watch: []string{"db/*.rb", "db/migrate"}, WorkDir: dir})
	if hashOf(t, other, 15, 1) == prev {
		t.Error("another command hashes the same")
	}
	missing := newCommand(t, CommandConfig{Command: "true", Watch: []string{"nothing/here"}, WorkDir: dir})
	if _, err := missing.Hash(t.Context(), 15, 1); err == nil || !strings.Contains(err.Error(), "nothing/here") {
		t.Errorf("a watch matching nothing: err = %v", err)
	}
}
