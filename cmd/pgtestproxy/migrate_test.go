package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgtestproxy/pgtestproxy/internal/testpg"
)

func TestMigrateFlags(t *testing.T) {
	c, _, err := parseFlags("serve", []string{"--migrations", "app=/m", "--migrations-format", "app=goose",
		"--seed", "app=/a.sql", "--seed", "app=/b.sql", "--migrate-cmd", "web=RAILS_ENV=test bin/rails db:schema:load",
		"--migrate-watch", "web=db/schema.rb", "--seed", "web=/c.sql"}, env(map[string]string{"PGTESTPROXY_MIGRATE_WATCH": "web=Gemfile.lock"}), &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(c.seeds.of("app"), " "); got != "/a.sql /b.sql" {
		t.Errorf("seeds of app = %q", got)
	}
	if got := c.migrateCmds.of("web"); len(got) != 1 || got[0] != "RAILS_ENV=test bin/rails db:schema:load" {
		t.Errorf("command of web = %q", got)
	}
	if got := c.migrateWatch.of("web"); len(got) != 1 || got[0] != "db/schema.rb" {
		t.Errorf("watch of web = %q (a flag wins over the environment)", got)
	}
	bad := []struct {
		args []string
		want string
	}{
		{[]string{"--migrations", "/m", "--migrations-format", "liquibase"}, `unknown migrations format "liquibase"`},
		{[]string{"--migrations", "a=/m", "--migrations-format", "b=goose"}, `no --migrations for template "b"`},
		{[]string{"--migrate-cmd", "make migrate"}, "want NAME=VALUE"},
		{[]string{"--migrate-cmd", "a=make", "--migrations", "a=/m"}, `template "a" has both`},
		{[]string{"--migrations", "a=/m", "--migrate-watch", "a=x"}, `no --migrate-cmd for template "a"`},
		{[]string{"--migrations", "a=/m", "--seed", "s.sql"}, `no --migrations or --migrate-cmd for template ""`},
		{[]string{"--migrate-timeout", "-1s"}, "negative"},
	}
	for _, b := range bad {
		if _, _, err := parseFlags("serve", b.args, env(nil), &bytes.Buffer{}); err == nil || !strings.Contains(err.Error(), b.want) {
			t.Errorf("%q: err = %v, want %q", b.args, err, b.want)
		}
	}
}

func psqlBin(t *testing.T) string {
	t.Helper()
	if p, err := exec.LookPath("psql"); err == nil {
		return p
	}
	debian, _ := filepath.Glob("/usr/lib/postgresql/*/bin/psql")
	if len(debian) == 0 {
		t.Fatal("psql not found: apt-get install postgresql-client")
	}
	return debian[0]
}

func queryProxy(t *testing.T, addr, db, sql string) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	c, err := pgx.Connect(ctx, "postgres://x@"+addr+"/"+db+"?sslmode=disable")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	var n int
	if err := c.QueryRow(ctx, sql).Scan(&n); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return n
}

func write(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestServeMigrateCommand: a --migrate-cmd template is built by the command, rebuilt
// when a watched file changes and not when another one does.
func TestServeMigrateCommand(t *testing.T) {
	dir := t.TempDir()
	schema, runs, notes := filepath.Join(dir, "schema.sql"), filepath.Join(dir, "runs"), filepath.Join(dir, "notes.txt")
	write(t, schema, "CREATE TABLE hooked (id int); INSERT INTO hooked VALUES (1);")
	write(t, notes, "v1")
	cmd := "echo run >> " + runs + " && " + psqlBin(t) + " -v ON_ERROR_STOP=1 -q -f " + schema
	addr := serve(t, "--upstream", testpg.AdminURL(t), "--migrate-cmd", "hook="+cmd, "--migrate-watch", "hook="+schema, "--pool-size", "1")
	countRuns := func() int {
		b, err := os.ReadFile(runs)
		if err != nil {
			t.Fatal(err)
		}
		return strings.Count(string(b), "run")
	}
	if n := queryProxy(t, addr, "hook", "SELECT count(*) FROM hooked"); n != 1 || countRuns() != 1 {
		t.Fatalf("hooked has %d rows after %d runs, want 1 after 1", n, countRuns())
	}
	write(t, notes, "v2, not watched")
	if n := queryProxy(t, addr, "hook", "SELECT count(*) FROM hooked"); n != 1 || countRuns() != 1 {
		t.Fatalf("after an unwatched edit: %d rows, %d runs; want 1 and 1", n, countRuns())
	}
	write(t, schema, "CREATE TABLE hooked (id int); INSERT INTO hooked VALUES (1), (2);")
	if n := queryProxy(t, addr, "hook", "SELECT count(*) FROM hooked"); n != 2 || countRuns() != 2 {
		t.Fatalf("after a watched edit: %d rows, %d runs; want 2 and 2", n, countRuns())
	}
}

// TestServeMigrateCommandFailure: the client's error carries the failing command's
// last output lines.
func TestServeMigrateCommandFailure(t *testing.T) {
	addr := serve(t, "--upstream", testpg.AdminURL(t), "--migrate-cmd", "broken=echo loading; echo 'rake aborted: no such task' >&2; exit 1",
		"--pool-size", "1")
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	_, err := pgx.Connect(ctx, "postgres://x@"+addr+"/broken?sslmode=disable")
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != "XX000" || !strings.Contains(pgErr.Message, "rake aborted: no such task") ||
		!strings.Contains(pgErr.Message, "loading") {
		t.Fatalf("err = %v, want XX000 with the command's output", err)
	}
}

// TestServeLayoutAndSeed: a goose directory plus a seed file.
func TestServeLayoutAndSeed(t *testing.T) {
	seed := filepath.Join(t.TempDir(), "seed.sql")
	write(t, seed, "COPY users (name) FROM stdin;\nbob\n\\.\n")
	addr := serve(t, "--upstream", testpg.AdminURL(t), "--migrations", "g=../../migrations/testdata/goose",
		"--migrations-format", "g=goose", "--seed", "g="+seed, "--pool-size", "1")
	if n := queryProxy(t, addr, "g", "SELECT count(*) FROM users WHERE name IN ('ann', 'bob')"); n != 2 {
		t.Fatalf("%d of ann (migration) and bob (seed)", n)
	}
	// SHOW TEMPLATES says how the template is built.
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	cfg, err := pgx.ParseConfig("postgres://x@" + addr + "/pgtestproxy?sslmode=disable")
	if err != nil {
		t.Fatal(err)
	}
	cfg.DefaultQueryExecMode = pgx.QueryExecModeSimpleProtocol
	c, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	rows, err := c.Query(ctx, "SHOW TEMPLATES")
	if err != nil {
		t.Fatal(err)
	}
	maps, err := pgx.CollectRows(rows, pgx.RowToMap)
	if err != nil {
		t.Fatal(err)
	}
	want := "goose ../../migrations/testdata/goose (3 files), then seed " + seed
	if len(maps) != 1 || maps[0]["source"] != want {
		t.Fatalf("SHOW TEMPLATES = %v, want source %q", maps, want)
	}
	// Built incrementally: cloned from the template of the three migrations, then seeded.
	if base, ok := maps[0]["base"].(string); !ok || !strings.Contains(base, "_tpl_") || maps[0]["base_steps"] != "3" {
		t.Fatalf("SHOW TEMPLATES = %v, want a base template holding 3 steps", maps)
	}
}
