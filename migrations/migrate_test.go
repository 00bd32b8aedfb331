package migrations

import (
	"context"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgtestproxy/pgtestproxy/internal/testpg"
)

func TestMain(m *testing.M) { os.Exit(testpg.Main(m)) }

// dirWith writes files into a fresh directory and opens it.
func dirWith(t *testing.T, files map[string]string) *Dir {
	t.Helper()
	dir := t.TempDir()
	for name, content := range files {
		writeFile(t, dir, name, content)
	}
	d, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func queryInt(t *testing.T, url, sql string) int {
	t.Helper()
	c, err := pgx.Connect(t.Context(), url)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(context.Background())
	var n int
	if err := c.QueryRow(t.Context(), sql).Scan(&n); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return n
}

func TestMigrateApplies(t *testing.T) {
	t.Parallel()
	d := dirWith(t, map[string]string{
		"001_users.up.sql":   "CREATE TABLE users (id serial PRIMARY KEY, name text NOT NULL);\n",
		"001_users.down.sql": "DROP TABLE users;\n",
		"002_seed.up.sql":    "INSERT INTO users (name) VALUES ('a'), ('b');\nCREATE INDEX ON users (name);\n",
	})
	url, _ := testpg.NewDatabase(t)
	h := hashOf(t, d, 15, 1)
	if err := d.Migrate(t.Context(), url, h); err != nil {
		t.Fatal(err)
	}
	if n := queryInt(t, url, "SELECT count(*) FROM users"); n != 2 {
		t.Fatalf("users has %d rows, want 2", n)
	}
	if v := queryInt(t, url, "SELECT version FROM schema_migrations WHERE NOT dirty"); v != 2 {
		t.Fatalf("schema_migrations at version %d, want 2", v)
	}
	// Already at the latest version: golang-migrate's ErrNoChange is success.
	if err := d.Migrate(t.Context(), url, h); err != nil {
		t.Fatalf("second Migrate: %v", err)
	}
}

func TestMigrateEmptyDirectory(t *testing.T) {
	t.Parallel()
	d := dirWith(t, map[string]string{"README.md": "no migrations yet"})
	url, _ := testpg.NewDatabase(t)
	if err := d.Migrate(t.Context(), url, hashOf(t, d, 15, 1)); err != nil {
		t.Fatal(err)
	}
}

func TestMigrateUnknownHash(t *testing.T) {
	t.Parallel()
	d := dirWith(t, map[string]string{"001_a.up.sql": "SELECT 1;"})
	if err := d.Migrate(t.Context(), "postgres://127.0.0.1:1/x", "feedface"); !errors.Is(err, ErrUnknownHash) {
		t.Fatalf("err = %v, want ErrUnknownHash", err)
	}
}

// TestMigrateUsesHashedContents: Migrate applies the bytes that produced the hash even
// when the file changed on disk since.
func TestMigrateUsesHashedContents(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	writeFile(t, dir, "001_a.up.sql", "CREATE TABLE hashed (id int);")
	d, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	h := hashOf(t, d, 15, 1)
	writeFile(t, dir, "001_a.up.sql", "CREATE TABLE edited_later (id int);")
	url, _ := testpg.NewDatabase(t)
	if err := d.Migrate(t.Context(), url, h); err != nil {
		t.Fatal(err)
	}
	if n := queryInt(t, url, "SELECT count(*) FROM pg_tables WHERE tablename = 'hashed'"); n != 1 {
		t.Fatal("the hashed contents were not applied")
	}
}

func TestMigrateErrorNamesFileAndLine(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		content  string
		code     string
		line     int
		contains string
	}{
		{"syntax error reported with a position", "CREATE TABLE ok (id int);\n\nCREATE TABLE broken (id int,,);\n", "42601", 3, "syntax error"},
		{"unknown relation on a later line", "CREATE TABLE ok (id int);\nINSERT INTO ok VALUES (1);\nINSERT INTO\n  nope VALUES (1);\n", "42P01", 4, `relation "nope" does not exist`},
		{"runtime error without position, several statements", "CREATE TABLE ok (id int);\n-- a comment; with a semicolon\nSELECT 1;\nSELECT 1/0;\nSELECT 2;\n", "22012", 4, "division by zero"},
		{"unique violation", "CREATE TABLE u (id int PRIMARY KEY);\nINSERT INTO u VALUES (1);\n\n\nINSERT INTO u VALUES (1);\n", "23505", 5, "duplicate key"},
		{"runtime error in a single statement", "\n\nDO $$ BEGIN RAISE EXCEPTION 'boom' USING ERRCODE = 'P0042'; END $$;\n", "P0042", 3, "boom"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			d := dirWith(t, map[string]string{
				"001_fine.up.sql":   "CREATE TABLE fine (id int);",
				"002_broken.up.sql": tt.content,
				"003_never.up.sql":  "CREATE TABLE never (id int);",
			})
			url, _ := testpg.NewDatabase(t)
			err := d.Migrate(t.Context(), url, hashOf(t, d, 15, 1))
			var merr *Error
			if !errors.As(err, &merr) {
				t.Fatalf("err = %v (%T), want *Error", err, err)
			}
			if merr.File != "002_broken.up.sql" || merr.Line != tt.line || merr.SQLState() != tt.code {
				t.Fatalf("got file %s line %d SQLSTATE %s, want 002_broken.up.sql line %d %s (%v)",
					merr.File, merr.Line, merr.SQLState(), tt.line, tt.code, err)
			}
			msg := err.Error()
			for _, want := range []string{"002_broken.up.sql", tt.contains, tt.code} {
				if !strings.Contains(msg, want) {
					t.Errorf("error %q does not mention %q", msg, want)
				}
			}
			if n := queryInt(t, url, "SELECT count(*) FROM pg_tables WHERE tablename IN ('fine', 'never')"); n != 1 {
				t.Errorf("%d of fine/never exist, want only fine", n)
			}
		})
	}
}

func TestMigrateHonoursDeadline(t *testing.T) {
	t.Parallel()
	d := dirWith(t, map[string]string{
		"001_fast.up.sql": "CREATE TABLE fast (id int);",
		"002_slow.up.sql": "SELECT pg_sleep(60);",
	})
	url, name := testpg.NewDatabase(t)
	h := hashOf(t, d, 15, 1)
	ctx, cancel := context.WithTimeout(t.Context(), 500*time.Millisecond)
	defer cancel()
	began := time.Now()
	err := d.Migrate(ctx, url, h)
	if took := time.Since(began); took > 10*time.Second {
		t.Fatalf("Migrate returned %v after its deadline", took)
	}
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want it to wrap context.DeadlineExceeded", err)
	}
	var merr *Error
	if !errors.As(err, &merr) || merr.File != "002_slow.up.sql" || merr.SQLState() != "57014" {
		t.Fatalf("err = %v, want an *Error naming 002_slow.up.sql with SQLSTATE 57014", err)
	}
	// The statement was cancelled on the server, not left running.
	deadline := time.Now().Add(10 * time.Second)
	for queryInt(t, testpg.AdminURL(t), "SELECT count(*) FROM pg_stat_activity WHERE datname = '"+name+"'") > 0 {
		if time.Now().After(deadline) {
			t.Fatal("the migration's backend is still running")
		}
		time.Sleep(20 * time.Millisecond)
	}
}
