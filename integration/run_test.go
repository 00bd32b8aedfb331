package integration

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	_ "github.com/jackc/pgx/v5/stdlib"
	"github.com/lib/pq"

	"github.com/pgtestproxy/pgtestproxy/internal/testpg"
)

// TestRunPsql is the README's story: `pgtestproxy run -- psql …` gets a migrated
// database through the libpq variables run exports, and run exits with psql's status.
func TestRunPsql(t *testing.T) {
	t.Parallel()
	upstream := "--upstream=" + testpg.AdminURL(t)
	mig := "--migrations=" + migrationsDir(t)
	out, errs, code := command(t, nil, "run", upstream, mig, "--pool-size=1", "--",
		"psql", "-X", "-At", "-v", "ON_ERROR_STOP=1", "-c", "SELECT name FROM users")
	if code != 0 || strings.TrimSpace(out) != "alice" {
		t.Fatalf("exit %d, stdout %q, stderr:\n%s", code, out, errs)
	}
	_, _, code = command(t, nil, "run", upstream, mig, "--pool-size=1", "--",
		"psql", "-X", "-v", "ON_ERROR_STOP=1", "-c", "SELECT * FROM no_such_table")
	if code != 1 {
		t.Fatalf("psql's failure exited %d through run, want psql's 1", code)
	}
}

// TestRunEmbeddedDefault runs with no upstream: the proxy starts its own PostgreSQL
// and stops it afterwards.
func TestRunEmbeddedDefault(t *testing.T) {
	t.Parallel()
	dataDir := scratchDataDir(t)
	script := `psql -X -At -v ON_ERROR_STOP=1 -c "SELECT count(*) FROM users" && ` +
		`psql -X -At -v ON_ERROR_STOP=1 -c "SHOW TEMPLATES" "dbname=pgtestproxy" | cut -d'|' -f1`
	out, errs, code := command(t, nil, "run", "--data-dir="+dataDir, "--migrations="+migrationsDir(t), "--pool-size=1",
		"--", "sh", "-c", script)
	if code != 0 || !strings.HasPrefix(out, "1\n(default)") {
		t.Fatalf("exit %d, stdout %q, stderr:\n%s", code, out, errs)
	}
	if b, err := os.ReadFile(dataDir + "/postmaster.pid"); err == nil {
		t.Fatalf("embedded server still running after run returned: pid file %q", b)
	}
}

// TestServeUntilSIGTERM runs `serve` as users do, talks to it through pgx, pgx stdlib
// and lib/pq, then stops it with SIGTERM.
func TestServeUntilSIGTERM(t *testing.T) {
	t.Parallel()
	addr := freeAddr(t)
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, binary, "serve", "--listen="+addr, "--upstream="+testpg.AdminURL(t),
		"--migrations=shop="+migrationsDir(t), "--pool-size=2", "--log-format=json")
	cmd.Env = cleanEnv()
	var logs bytes.Buffer
	cmd.Stderr = &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	waitAccepting(t, addr, exited)

	url := "postgres://tester@" + addr + "/shop?sslmode=disable"
	for _, driver := range []string{"pgx", "postgres"} { // pgx stdlib, lib/pq
		t.Run(driver, func(t *testing.T) { checkDatabaseSQL(t, driver, url) })
	}
	c, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	var n int
	if err := c.QueryRow(ctx, "SELECT count(*) FROM users").Scan(&n); err != nil || n != 1 {
		t.Fatalf("pgx: %d users, %v", n, err)
	}
	c.Close(ctx)

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		if err != nil {
			t.Fatalf("serve exited with %v after SIGTERM; logs:\n%s", err, logs.String())
		}
	case <-time.After(time.Minute):
		t.Fatal("serve did not exit within a minute of SIGTERM")
	}
	if !strings.Contains(logs.String(), `"msg":"proxy stopped"`) {
		t.Fatalf("JSON logs lack the stop record:\n%s", logs.String())
	}
}

// checkDatabaseSQL uses a database/sql pool: each new connection is its own lease, so
// a write on one is invisible to the next; a unique violation surfaces as the driver's
// error type with SQLSTATE 23505.
func checkDatabaseSQL(t *testing.T, driver, url string) {
	t.Helper()
	db, err := sql.Open(driver, url)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	db.SetMaxIdleConns(0) // every query on a new connection, so a new lease
	ctx := t.Context()
	if _, err := db.ExecContext(ctx, "INSERT INTO users (name) VALUES ($1)", "bob"); err != nil {
		t.Fatal(err)
	}
	var n int
	if err := db.QueryRowContext(ctx, "SELECT count(*) FROM users").Scan(&n); err != nil || n != 1 {
		t.Fatalf("a new connection sees %d users (%v), want the template's 1", n, err)
	}
	_, err = db.ExecContext(ctx, "INSERT INTO users (name) VALUES ('alice')")
	if code := sqlState(err); code != "23505" {
		t.Fatalf("duplicate insert: %v (SQLSTATE %q), want 23505", err, code)
	}
}

func sqlState(err error) string {
	var pqErr *pq.Error
	if errors.As(err, &pqErr) {
		return string(pqErr.Code)
	}
	var s interface{ SQLState() string }
	if errors.As(err, &s) {
		return s.SQLState()
	}
	return ""
}
