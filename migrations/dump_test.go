package migrations

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/pgtestproxy/pgtestproxy/internal/pgserver"
	"github.com/pgtestproxy/pgtestproxy/internal/testpg"
)

// dumpSchema is a schema with what pg_dump writes in several shapes: a function body
// full of semicolons, a trigger, a view, sequences, and rows with tabs, newlines,
// backslashes and NULLs for COPY's text format.
const dumpSchema = `CREATE TABLE users (id serial PRIMARY KEY, name text NOT NULL, bio text);
CREATE FUNCTION lower_name() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  NEW.name := lower(NEW.name); -- a semicolon; or two;
  RETURN NEW;
END;
$$;
CREATE TRIGGER users_lower BEFORE INSERT ON users FOR EACH ROW EXECUTE FUNCTION lower_name();
CREATE VIEW user_names AS SELECT name FROM users;
CREATE INDEX users_bio ON users (bio);
INSERT INTO users (name, bio) VALUES ('Ann', E'tab\there\nnew line \\ backslash'), ('Bob', NULL), ('Cy', '\.');
`

// pgDump runs the server's pg_dump on dbURL with args and returns the file it wrote.
func pgDump(t *testing.T, dbURL string, args ...string) string {
	t.Helper()
	out := filepath.Join(t.TempDir(), "schema.sql")
	cmd := exec.CommandContext(t.Context(), pgDumpPath(t), append(args, "--no-owner", "-f", out, "-d", dbURL)...)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("pg_dump: %v\n%s", err, b)
	}
	return out
}

// pgDumpPath finds pg_dump beside the test server's binaries, in Debian's place for
// them, or on PATH.
func pgDumpPath(t *testing.T) string {
	t.Helper()
	var candidates []string
	if bin, err := pgserver.FindBinDir(); err == nil {
		candidates = append(candidates, filepath.Join(bin, "pg_dump"))
	}
	debian, _ := filepath.Glob("/usr/lib/postgresql/*/bin/pg_dump")
	for _, c := range append(candidates, debian...) {
		if _, err := os.Stat(c); err == nil {
			return c
		}
	}
	p, err := exec.LookPath("pg_dump")
	if err != nil {
		t.Fatalf("pg_dump not found (tried %v and PATH): install postgresql-client", candidates)
	}
	return p
}

var restrictRE = regexp.MustCompile(`(?m)^\\(un)?restrict .*$`)

// TestDumpAsTemplate: what pg_dump writes of a migrated database, schema only and with
// its data, builds a database that dumps the same.
func TestDumpAsTemplate(t *testing.T) {
	t.Parallel()
	src := dirWith(t, map[string]string{"001_schema.up.sql": dumpSchema})
	srcURL, _ := testpg.NewDatabase(t)
	if err := src.Migrate(t.Context(), srcURL, hashOf(t, src, 15, 1)); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name  string
		args  []string
		users int
	}{{"schema only", []string{"--schema-only"}, 0}, {"with data", nil, 3}} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			file := pgDump(t, srcURL, tt.args...)
			data, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			if tt.users > 0 && !strings.Contains(string(data), "FROM stdin;") {
				t.Fatal("the dump holds no COPY … FROM stdin block")
			}
			d, err := Open(file)
			if err != nil {
				t.Fatal(err)
			}
			if desc := d.Describe(); !strings.HasPrefix(desc, "dump ") {
				t.Errorf("Describe() = %q", desc)
			}
			url, _ := testpg.NewDatabase(t)
			if err := d.Migrate(t.Context(), url, hashOf(t, d, 15, 1)); err != nil {
				t.Fatal(err)
			}
			if n := queryInt(t, url, "SELECT count(*) FROM users"); n != tt.users {
				t.Errorf("users has %d rows, want %d", n, tt.users)
			}
			if tt.users > 0 {
				if n := queryInt(t, url, `SELECT count(*) FROM users WHERE bio = E'tab\there\nnew line \\ backslash' OR bio IS NULL OR bio = '\.'`); n != 3 {
					t.Errorf("%d of 3 rows came back as they were", n)
				}
			}
			again := pgDump(t, url, tt.args...)
			b, err := os.ReadFile(again)
			if err != nil {
				t.Fatal(err)
			}
			if want, got := restrictRE.ReplaceAllString(string(data), ""), restrictRE.ReplaceAllString(string(b), ""); got != want {
				t.Errorf("the rebuilt database dumps differently:\n--- want\n%s\n--- got\n%s", want, got)
			}
		})
	}
}

// TestDumpMetaCommands: harmless psql meta-commands are skipped; others fail naming
// the command and the line, and so does a bad COPY row.
func TestDumpMetaCommands(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, script string
		line         int
		contains     string
	}{
		{"skipped", "\\restrict k\nCREATE TABLE t (id int);\n\\echo hi\n\\unrestrict k\n", 0, ""},
		{"connect refused", "CREATE TABLE t (id int);\n\n\\connect other\nCREATE TABLE u (id int);\n", 3, `\connect is not supported`},
		{"bad copy row", "CREATE TABLE t (id int);\nCOPY t (id) FROM stdin;\n1\n2\nx\n\\.\n", 5, "invalid input syntax"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			file := filepath.Join(t.TempDir(), "structure.sql")
			if err := os.WriteFile(file, []byte(tt.script), 0o644); err != nil {
				t.Fatal(err)
			}
			d, err := Open(file)
			if err != nil {
				t.Fatal(err)
			}
			url, _ := testpg.NewDatabase(t)
			err = d.Migrate(t.Context(), url, hashOf(t, d, 15, 1))
			if tt.line == 0 {
				if err != nil {
					t.Fatal(err)
				}
				if n := queryInt(t, url, "SELECT count(*) FROM pg_tables WHERE tablename = 't'"); n != 1 {
					t.Fatal("the script's table is missing")
				}
				return
			}
			var merr *Error
			if !errors.As(err, &merr) || merr.Line != tt.line || merr.File != file || !strings.Contains(err.Error(), tt.contains) {
				t.Fatalf("err = %v, want %s line %d mentioning %q", err, file, tt.line, tt.contains)
			}
		})
	}
}
