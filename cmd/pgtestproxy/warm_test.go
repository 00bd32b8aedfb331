package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgtestproxy/pgtestproxy/internal/testpg"
	"github.com/pgtestproxy/pgtestproxy/pool"
)

// childCatalogEnv makes this test binary, run as `pgtestproxy run`'s command, report
// whether the template named by childTemplateEnv is built: the catalog's view when the
// command starts.
const (
	childCatalogEnv  = "PGTESTPROXY_CHILD_CATALOG"
	childTemplateEnv = "PGTESTPROXY_CHILD_TEMPLATE"
)

func childTemplateReady() int {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c, err := pgx.Connect(ctx, os.Getenv(childCatalogEnv))
	if err != nil {
		fmt.Fprintln(os.Stderr, "child:", err)
		return 100
	}
	defer c.Close(ctx)
	n, err := readyTemplates(ctx, c, os.Getenv(childTemplateEnv))
	if err != nil {
		fmt.Fprintln(os.Stderr, "child:", err)
		return 101
	}
	fmt.Printf("template_ready=%d\n", n)
	return 0
}

func readyTemplates(ctx context.Context, c *pgx.Conn, template string) (int, error) {
	var n int
	query := fmt.Sprintf("SELECT count(*) FROM catalog_v%d.template_dbs WHERE", pool.CatalogVersion)
	err := c.QueryRow(ctx, query+" template = $1 AND state = 'ready'", template).Scan(&n)
	return n, err
}

// migrationsDir writes one golang-migrate migration with the given body.
func migrationsDir(t *testing.T, body string) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "001_init.up.sql"), []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// usersOf is a users table with one row, in a migration of its own: the comment makes
// its hash, and so its template, unique to the test (the catalog records a template
// under the name of the first test that built it).
func usersOf(unique string) string {
	return "-- " + unique + "\nCREATE TABLE users (id serial PRIMARY KEY, name text NOT NULL);\n" +
		"INSERT INTO users (name) VALUES ('alice');\n"
}

// serve builds every template at start-up: the template is built before the first
// client connects, and that client's lease is served from it.
func TestServeBuildsTemplatesAtStartup(t *testing.T) {
	name := strings.TrimPrefix(testpg.UniqueName(t, "w"), "w") // unique in the shared catalog
	ctx, cancel := context.WithCancel(t.Context())
	ready, warmed, done := make(chan string, 1), make(chan error, 1), make(chan int, 1)
	go func() {
		done <- runWith(ctx, []string{"serve", "--listen", "127.0.0.1:0", "--upstream", testpg.AdminURL(t),
			"--migrations", name + "=" + migrationsDir(t, usersOf(name)), "--pool-size", "1"}, env(nil), io.Discard, io.Discard,
			hooks{ready: func(addr string) { ready <- addr }, warmed: func(_ string, err error) { warmed <- err }})
	}()
	t.Cleanup(func() {
		cancel()
		if code := <-done; code != 0 {
			t.Errorf("serve exited %d", code)
		}
	})
	addr := <-ready
	select {
	case err := <-warmed:
		if err != nil {
			t.Fatalf("start-up build: %v", err)
		}
	case <-time.After(2 * time.Minute): // a hang guard, not a synchronisation
		t.Fatal("serve built no template at start-up")
	}
	cat, err := pgx.Connect(t.Context(), testpg.URL(t, "pgtestproxy"))
	if err != nil {
		t.Fatal(err)
	}
	defer cat.Close(context.Background())
	if n, err := readyTemplates(t.Context(), cat, name); err != nil || n != 1 {
		t.Fatalf("template %s before the first client: %d ready (%v), want 1", name, n, err)
	}
	began := time.Now()
	c, err := pgx.Connect(t.Context(), "postgres://x@"+addr+"/"+name+"?sslmode=disable")
	if err != nil {
		t.Fatal(err)
	}
	var users int
	if err := c.QueryRow(t.Context(), "SELECT count(*) FROM users").Scan(&users); err != nil || users != 1 {
		t.Fatalf("first client: %d users, %v", users, err)
	}
	t.Logf("first connection and query after a warm start: %v", time.Since(began))
	c.Close(context.Background())
}

// run waits for the default template before it starts the command, unless --no-wait:
// then the command starts while the build is still blocked (on a gate the test holds shut).
func TestRunWaitsForDefaultTemplate(t *testing.T) {
	gate, _ := testpg.Gate(t) // opened when the test ends, after the no-wait command has run
	blocked := migrationsDir(t, gate+"\nCREATE TABLE users (id int);\n")
	open := migrationsDir(t, usersOf(testpg.UniqueName(t, "")))
	for _, tc := range []struct {
		name, dir string
		flags     []string
		want      string
	}{
		{"no-wait", blocked, []string{"--no-wait"}, "template_ready=0"},
		{"wait", open, nil, "template_ready=1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			template := testpg.UniqueName(t, "r")
			t.Setenv(childCatalogEnv, testpg.URL(t, "pgtestproxy"))
			t.Setenv(childTemplateEnv, template)
			var out, errs bytes.Buffer
			args := append([]string{"run", "--upstream", testpg.AdminURL(t), "--migrations", template + "=" + tc.dir,
				"--pool-size", "1"}, tc.flags...)
			code := run(t.Context(), append(args, "--", os.Args[0]), env(nil), &out, &syncBuffer{b: &errs})
			if code != 0 || !strings.Contains(out.String(), tc.want) {
				t.Fatalf("run exited %d, child said %q, want %q; stderr %s", code, out.String(), tc.want, errs.String())
			}
		})
	}
}
