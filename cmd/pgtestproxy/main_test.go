package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgtestproxy/pgtestproxy/internal/testpg"
)

func TestMain(m *testing.M) {
	if os.Getenv(childCatalogEnv) != "" {
		os.Exit(childTemplateReady())
	}
	if os.Getenv("PGTESTPROXY_CHILD") != "" {
		os.Exit(childMain())
	}
	os.Exit(testpg.Main(m))
}

func env(kv map[string]string) func(string) string {
	return func(k string) string { return kv[k] }
}

func TestFlagsWinOverEnvironment(t *testing.T) {
	tests := []struct {
		name string
		args []string
		env  map[string]string
		want func(*config) string // "" when fine
	}{
		{"defaults", nil, nil, func(c *config) string {
			if c.listen != "127.0.0.1:6543" || c.mode != "db" || c.poolSize != 4 || c.ttl != 24*time.Hour || c.listenGiven ||
				c.poolCloneStrategy() != "" {
				return fmt.Sprintf("%+v", *c)
			}
			return ""
		}},
		{"env fills flags", nil, map[string]string{"PGTESTPROXY_LISTEN": "127.0.0.1:7000", "PGTESTPROXY_POOL_SIZE": "9",
			"PGTESTPROXY_MODE": "tx", "PGTESTPROXY_MIGRATIONS": "a=/x, /y", "PGTESTPROXY_REFILL_PARALLELISM": "6",
			"PGTESTPROXY_CLONE_STRATEGY": "File_Copy"}, func(c *config) string {
			if c.listen != "127.0.0.1:7000" || c.poolSize != 9 || c.mode != "tx" || !c.listenGiven ||
				c.migrations.String() != "a=/x,=/y" || c.refillParallel != 6 || c.poolCloneStrategy() != "FILE_COPY" {
				return fmt.Sprintf("%+v", *c)
			}
			return ""
		}},
		{"flags win", []string{"--pool-size", "2", "--mode=db", "--migrations", "/z"},
			map[string]string{"PGTESTPROXY_POOL_SIZE": "9", "PGTESTPROXY_MODE": "tx", "PGTESTPROXY_MIGRATIONS": "/y"}, func(c *config) string {
				if c.poolSize != 2 || c.mode != "db" || c.migrations.String() != "=/z" {
					return fmt.Sprintf("%+v", *c)
				}
				return ""
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, _, err := parseFlags("serve", tt.args, env(tt.env), &bytes.Buffer{})
			if err != nil {
				t.Fatal(err)
			}
			if msg := tt.want(c); msg != "" {
				t.Fatalf("config: %s", msg)
			}
		})
	}
}

func TestBadCommandLines(t *testing.T) {
	tests := []struct {
		name string
		args []string
		env  map[string]string
		want string
	}{
		{"unknown command", []string{"frobnicate"}, nil, `unknown command "frobnicate"`},
		{"bad mode", []string{"--mode", "xa"}, nil, `--mode "xa": want db or tx`},
		{"bad env value", nil, map[string]string{"PGTESTPROXY_POOL_SIZE": "many"}, "PGTESTPROXY_POOL_SIZE"},
		{"duplicate template", []string{"--migrations", "a=/x", "--migrations", "a=/y"}, nil, `template "a" given twice`},
		{"run without command", []string{"run"}, nil, "no command given"},
		{"bad listen", []string{"--listen", "nowhere"}, nil, `--listen "nowhere"`},
		{"negative refill parallelism", []string{"--refill-parallelism", "-1"}, nil, "--refill-parallelism must be ≥ 0"},
		{"bad clone strategy", []string{"--clone-strategy", "copy"}, nil, `--clone-strategy "copy": want auto, wal_log or file_copy`},
		{"plus in template name", []string{"--migrations", "a+b=/x"}, nil, `template name "a+b": may not contain '+'`},
		{"plus in command template name", []string{"--migrate-cmd", "a+tx=true"}, nil, `template name "a+tx"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stderr bytes.Buffer
			code := run(t.Context(), tt.args, env(tt.env), &bytes.Buffer{}, &stderr)
			if code != 2 || !strings.Contains(stderr.String(), tt.want) {
				t.Fatalf("exit %d, stderr %q; want 2 and %q", code, stderr.String(), tt.want)
			}
		})
	}
}

func TestVersion(t *testing.T) {
	var out bytes.Buffer
	if code := run(t.Context(), []string{"version"}, env(nil), &out, &out); code != 0 || !strings.HasPrefix(out.String(), "pgtestproxy ") {
		t.Fatalf("exit %d, output %q", code, out.String())
	}
}

// writeMigrations makes a golang-migrate directory with a users table and one row.
func writeMigrations(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	sql := "CREATE TABLE users (id serial PRIMARY KEY, name text NOT NULL);\nINSERT INTO users (name) VALUES ('alice');\n"
	if err := os.WriteFile(filepath.Join(dir, "001_users.up.sql"), []byte(sql), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// serve runs the proxy in-process on a free port and returns its address; it stops
// when the test ends.
func serve(t *testing.T, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan string, 1)
	done := make(chan int, 1)
	var logs bytes.Buffer
	go func() {
		done <- runWith(ctx, append([]string{"serve", "--listen", "127.0.0.1:0"}, args...), env(nil), io.Discard, &syncBuffer{b: &logs},
			hooks{ready: func(addr string) { ready <- addr }})
	}()
	t.Cleanup(func() {
		cancel()
		if code := <-done; code != 0 {
			t.Errorf("serve exited %d", code)
		}
	})
	select {
	case addr := <-ready:
		return addr
	case code := <-done:
		t.Fatalf("serve exited %d before it was ready", code)
	case <-time.After(2 * time.Minute):
		t.Fatal("serve not ready within 2 minutes")
	}
	return ""
}

func TestServeGivesEachConnectionAFreshMigratedDatabase(t *testing.T) {
	addr := serve(t, "--upstream", testpg.AdminURL(t), "--migrations", writeMigrations(t), "--pool-size", "2")
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	seen := map[string]bool{}
	for i := range 3 {
		c, err := pgx.Connect(ctx, "postgres://someone@"+addr+"/app?sslmode=disable")
		if err != nil {
			t.Fatal(err)
		}
		var db string
		var n int
		if err := c.QueryRow(ctx, "SELECT current_database(), count(*) FROM users").Scan(&db, &n); err != nil {
			t.Fatal(err)
		}
		if n != 1 || seen[db] {
			t.Fatalf("connection %d: database %s with %d users (seen before: %v)", i, db, n, seen[db])
		}
		seen[db] = true
		if _, err := c.Exec(ctx, "INSERT INTO users (name) VALUES ('mallory')"); err != nil {
			t.Fatal(err)
		}
		c.Close(ctx)
	}
}

func TestServeUnknownTemplate(t *testing.T) {
	addr := serve(t, "--upstream", testpg.AdminURL(t), "--migrations", "shop="+writeMigrations(t), "--pool-size", "1")
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	_, err := pgx.Connect(ctx, "postgres://x@"+addr+"/nosuch?sslmode=disable")
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != "3D000" || !strings.Contains(pgErr.Message, "nosuch") || !strings.Contains(pgErr.Message, "shop") {
		t.Fatalf("err = %v, want 3D000 naming nosuch and shop", err)
	}
}

// TestRunPassesExitStatus runs this test binary as the command (see childMain): it
// connects through DATABASE_URL and exits with the status the test asks for.
func TestRunPassesExitStatus(t *testing.T) {
	upstream := testpg.AdminURL(t)
	migrations := writeMigrations(t)
	for _, want := range []int{0, 3} {
		t.Run(fmt.Sprint(want), func(t *testing.T) {
			t.Setenv("PGTESTPROXY_CHILD", fmt.Sprint(want))
			var out, errs bytes.Buffer
			code := run(t.Context(), []string{"run", "--upstream", upstream, "--migrations", migrations, "--pool-size", "1", "--", os.Args[0]},
				env(nil), &out, &syncBuffer{b: &errs})
			if code != want {
				t.Fatalf("run exited %d, want %d; stdout %q; stderr %s", code, want, out.String(), errs.String())
			}
			if !strings.Contains(out.String(), "users=1 pgdatabase=test") {
				t.Fatalf("child output %q", out.String())
			}
		})
	}
}

// childMain is the command TestRunPassesExitStatus runs under `pgtestproxy run`.
func childMain() int {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c, err := pgx.Connect(ctx, os.Getenv("DATABASE_URL"))
	if err != nil {
		fmt.Fprintln(os.Stderr, "child:", err)
		return 100
	}
	defer c.Close(ctx)
	var n int
	if err := c.QueryRow(ctx, "SELECT count(*) FROM users").Scan(&n); err != nil {
		fmt.Fprintln(os.Stderr, "child:", err)
		return 101
	}
	fmt.Printf("users=%d pgdatabase=%s\n", n, os.Getenv("PGDATABASE"))
	var code int
	fmt.Sscan(os.Getenv("PGTESTPROXY_CHILD"), &code)
	return code
}

func TestGCCommand(t *testing.T) {
	var out, errs bytes.Buffer
	code := run(t.Context(), []string{"gc", "--upstream", testpg.AdminURL(t), "--migrations", writeMigrations(t)},
		env(nil), &out, &syncBuffer{b: &errs})
	if code != 0 || !strings.HasPrefix(out.String(), "reclaimed ") {
		t.Fatalf("gc exited %d, stdout %q, stderr %s", code, out.String(), errs.String())
	}
}
