package migrations

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pgtestproxy/pgtestproxy/internal/testpg"
)

// TestFormatsApply builds each fixture under testdata, detected and with its format
// given, and checks what its up parts made (and that no down part or undo file ran:
// those hold a division by zero).
func TestFormatsApply(t *testing.T) {
	t.Parallel()
	tests := []struct {
		format Format
		checks map[string]int
	}{
		{Goose, map[string]int{
			"SELECT count(*) FROM users":                                     1,
			"SELECT count(*) FROM pg_trigger WHERE tgname = 'users_touch'":   1,
			"SELECT count(*) FROM pg_indexes WHERE indexname = 'users_name'": 1,
			"SELECT count(*) FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid WHERE c.relname = 'users_name' AND i.indisvalid": 1,
		}},
		{Dbmate, map[string]int{
			"SELECT count(*) FROM users":                                     1,
			"SELECT count(*) FROM pg_indexes WHERE indexname = 'users_name'": 1,
		}},
		{Flyway, map[string]int{
			"SELECT count(*) FROM users":                                      1,
			"SELECT count(*) FROM pg_indexes WHERE indexname = 'users_email'": 1,
			"SELECT count(*) FROM user_names":                                 1,
		}},
		{Prisma, map[string]int{
			"SELECT count(*) FROM users":                               1,
			"SELECT count(*) FROM pg_tables WHERE tablename = 'posts'": 1,
		}},
	}
	for _, tt := range tests {
		t.Run(string(tt.format), func(t *testing.T) {
			t.Parallel()
			dir := filepath.Join("testdata", string(tt.format))
			detected, err := Open(dir)
			if err != nil {
				t.Fatal(err)
			}
			given, err := OpenFormat(dir, tt.format)
			if err != nil {
				t.Fatal(err)
			}
			h := hashOf(t, detected, 15, 1)
			if hashOf(t, given, 15, 1) != h {
				t.Error("the detected and the given format hash differently")
			}
			if desc := detected.Describe(); !strings.HasPrefix(desc, string(tt.format)+" ") {
				t.Errorf("Describe() = %q, want it to start with the format", desc)
			}
			url, _ := testpg.NewDatabase(t)
			if err := detected.Migrate(t.Context(), url, h); err != nil {
				t.Fatal(err)
			}
			for sql, want := range tt.checks {
				if got := queryInt(t, url, sql); got != want {
					t.Errorf("%s = %d, want %d", sql, got, want)
				}
			}
		})
	}
}

// TestGooseTriggerFromStatementBlock: the plpgsql function of a StatementBegin block
// is created whole, semicolons and all, and works.
func TestGooseTriggerFromStatementBlock(t *testing.T) {
	t.Parallel()
	d, err := Open(filepath.Join("testdata", "goose"))
	if err != nil {
		t.Fatal(err)
	}
	url, _ := testpg.NewDatabase(t)
	if err := d.Migrate(t.Context(), url, hashOf(t, d, 15, 1)); err != nil {
		t.Fatal(err)
	}
	if n := queryInt(t, url, "WITH i AS (INSERT INTO users (name) VALUES ('BOB') RETURNING name) SELECT count(*) FROM i WHERE name = 'bob'"); n != 1 {
		t.Fatal("the trigger function from the StatementBegin block did not run")
	}
}

// TestGooseBlockWithSeveralStatements: a StatementBegin block goes as written, even
// holding more than one statement, between statements that are pipelined.
func TestGooseBlockWithSeveralStatements(t *testing.T) {
	t.Parallel()
	d := dirWith(t, map[string]string{"001_a.sql": "-- +goose Up\nCREATE TABLE a (id int);\n" +
		"-- +goose StatementBegin\nCREATE TABLE b (id int); CREATE TABLE c (id int);\n-- +goose StatementEnd\n" +
		"CREATE TABLE d (id int);\nCREATE TABLE e (id int);\n"})
	url, _ := testpg.NewDatabase(t)
	if err := d.Migrate(t.Context(), url, hashOf(t, d, 15, 1)); err != nil {
		t.Fatal(err)
	}
	if n := queryInt(t, url, "SELECT count(*) FROM pg_tables WHERE tablename IN ('a', 'b', 'c', 'd', 'e')"); n != 5 {
		t.Fatalf("%d of 5 tables", n)
	}
}

// TestSectionsHashOnlyUpParts: editing a down section leaves the hash alone; editing
// the up section or the transaction choice changes it.
func TestSectionsHashOnlyUpParts(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, file, before, after string
		changes                   bool
	}{
		{"goose down", "001_a.sql", "-- +goose Up\nSELECT 1;\n-- +goose Down\nSELECT 2;\n", "-- +goose Up\nSELECT 1;\n-- +goose Down\nSELECT 3;\n", false},
		{"goose up", "001_a.sql", "-- +goose Up\nSELECT 1;\n-- +goose Down\n", "-- +goose Up\nSELECT 2;\n-- +goose Down\n", true},
		{"goose no transaction", "001_a.sql", "-- +goose Up\nSELECT 1;\n", "-- +goose NO TRANSACTION\n-- +goose Up\nSELECT 1;\n", true},
		{"dbmate down", "001_a.sql", "-- migrate:up\nSELECT 1;\n-- migrate:down\nSELECT 2;\n", "-- migrate:up\nSELECT 1;\n-- migrate:down\nSELECT 9;\n", false},
		{"dbmate transaction", "001_a.sql", "-- migrate:up\nSELECT 1;\n", "-- migrate:up transaction:false\nSELECT 1;\n", true},
		{"flyway undo", "U1__a.sql", "SELECT 1;", "SELECT 2;", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			writeFile(t, dir, tt.file, tt.before)
			if strings.HasPrefix(tt.file, "U") {
				writeFile(t, dir, "V1__a.sql", "SELECT 1;")
			}
			d, err := Open(dir)
			if err != nil {
				t.Fatal(err)
			}
			before := hashOf(t, d, 15, 1)
			writeFile(t, dir, tt.file, tt.after)
			if (hashOf(t, d, 15, 1) != before) != tt.changes {
				t.Fatalf("hash changed = %v, want %v", !tt.changes, tt.changes)
			}
		})
	}
}

// TestFormatErrorNamesFileAndLine: a failing statement of a native layout is named by
// its file and its line in that file, also inside a goose section or block.
func TestFormatErrorNamesFileAndLine(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, file, content string
		line                int
		code                string
	}{
		{"goose after the Up line", "002_b.sql", "-- +goose Up\nSELECT 1;\n\nSELECT nope\n  FROM nowhere;\n-- +goose Down\nSELECT 1;\n", 5, "42P01"},
		{"goose block", "002_b.sql", "-- +goose Up\n-- +goose StatementBegin\nDO $$\nBEGIN\n  PERFORM 1;\nEND $$ LANGUAGE plpgsql\n  bogus;\n-- +goose StatementEnd\n", 7, "42601"},
		{"dbmate without position", "002_b.sql", "-- migrate:up\nSELECT 1;\nSELECT 1/0;\n-- migrate:down\n", 3, "22012"},
		{"flyway", "V2__b.sql", "CREATE TABLE t (id int);\nINSERT INTO t VALUES ('x');\n", 2, "22P02"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			files := map[string]string{tt.file: tt.content}
			switch {
			case strings.HasPrefix(tt.file, "V"):
				files["V1__a.sql"] = "SELECT 1;"
			case strings.Contains(tt.content, "goose"):
				files["001_a.sql"] = "-- +goose Up\nSELECT 1;\n"
			default:
				files["001_a.sql"] = "-- migrate:up\nSELECT 1;\n"
			}
			d := dirWith(t, files)
			url, _ := testpg.NewDatabase(t)
			err := d.Migrate(t.Context(), url, hashOf(t, d, 15, 1))
			var merr *Error
			if !errors.As(err, &merr) || merr.File != tt.file || merr.Line != tt.line || merr.SQLState() != tt.code {
				t.Fatalf("err = %v, want %s line %d SQLSTATE %s", err, tt.file, tt.line, tt.code)
			}
		})
	}
}

// TestLayoutErrors: a directory whose layout cannot be told, or that holds what
// pgtestproxy cannot apply, fails with a message naming what it found.
func TestLayoutErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		files    map[string]string
		contains []string
	}{
		{"ambiguous", map[string]string{"001_a.up.sql": "SELECT 1;", "V2__b.sql": "SELECT 1;"},
			[]string{"ambiguous", "golang-migrate (001_a.up.sql)", "flyway (V2__b.sql)", "goose, dbmate"}},
		{"unknown", map[string]string{"schema.sql": "SELECT 1;", "001_x.sql": "SELECT 1;"},
			[]string{"unknown layout", "001_x.sql", "schema.sql", "goose (NNN_name.sql with -- +goose Up)"}},
		{"goose go migration", map[string]string{"001_a.sql": "-- +goose Up\nSELECT 1;", "002_b.go": "package m"},
			[]string{"002_b.go", "goose Go migration"}},
		{"goose annotation", map[string]string{"001_a.sql": "-- +goose Up\n-- +goose ENVSUB ON\nSELECT 1;"},
			[]string{"001_a.sql line 2", "ENVSUB ON"}},
		{"flyway duplicate", map[string]string{"V1__a.sql": "SELECT 1;", "V1.0__b.sql": "SELECT 1;"},
			[]string{"V1.0__b.sql", "V1__a.sql", "share a version"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			d := dirWith(t, tt.files)
			_, err := d.Hash(t.Context(), 15, 1)
			if err == nil {
				t.Fatal("Hash succeeded")
			}
			for _, want := range tt.contains {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not mention %q", err, want)
				}
			}
		})
	}
	if _, err := ParseFormat("liquibase"); err == nil || !strings.Contains(err.Error(), "golang-migrate, goose, dbmate, flyway, prisma") {
		t.Errorf("ParseFormat(liquibase) = %v, want the known formats named", err)
	}
	if _, err := OpenFormat(t.TempDir(), Dump); err == nil {
		t.Error("a directory opened as a dump")
	}
	f := filepath.Join(t.TempDir(), "x.sql")
	if err := os.WriteFile(f, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := OpenFormat(f, Goose); err == nil {
		t.Error("a file opened as a goose directory")
	}
}

// TestFormatHonoursDeadline: a native layout's statement is cancelled on the server
// when ctx ends, and the error names the file.
func TestFormatHonoursDeadline(t *testing.T) {
	t.Parallel()
	d := dirWith(t, map[string]string{"001_slow.sql": "-- +goose Up\nCREATE TABLE a (id int);\nSELECT pg_sleep(60);\n"})
	url, name := testpg.NewDatabase(t)
	h := hashOf(t, d, 15, 1)
	ctx, cancel := context.WithTimeout(t.Context(), 500*time.Millisecond)
	defer cancel()
	err := d.Migrate(ctx, url, h)
	var merr *Error
	if !errors.Is(err, context.DeadlineExceeded) || !errors.As(err, &merr) || merr.File != "001_slow.sql" || merr.SQLState() != "57014" {
		t.Fatalf("err = %v, want a deadline naming 001_slow.sql with SQLSTATE 57014", err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for queryInt(t, testpg.AdminURL(t), "SELECT count(*) FROM pg_stat_activity WHERE datname = '"+name+"'") > 0 {
		if time.Now().After(deadline) {
			t.Fatal("the migration's backend is still running")
		}
		time.Sleep(20 * time.Millisecond)
	}
}
