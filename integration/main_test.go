package integration

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgtestproxy/pgtestproxy/internal/testpg"
)

// binary is the pgtestproxy binary under test, built by TestMain.
var binary string

// envTestBinary names a pgtestproxy binary to test instead of building one from this
// tree (e.g. a release build, or HEAD's while the working tree does not build).
const envTestBinary = "PGTESTPROXY_TEST_BINARY"

func TestMain(m *testing.M) {
	if os.Getenv(envSuiteChild) != "" {
		// A runner under `pgtestproxy run` (TestRunSuiteEmbedded): the binary is built.
		os.Exit(m.Run())
	}
	if b := os.Getenv(envTestBinary); b != "" {
		abs, err := filepath.Abs(b)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		binary = abs
		os.Exit(testpg.Main(m))
	}
	dir, err := os.MkdirTemp("", "pgtestproxy-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary = filepath.Join(dir, "pgtestproxy")
	build := exec.Command("go", "build", "-o", binary, "../cmd/pgtestproxy")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build pgtestproxy:", err)
		os.Exit(1)
	}
	code := testpg.Main(m)
	os.RemoveAll(dir)
	os.Exit(code)
}

// migrationsDir writes a golang-migrate directory: a users table with one row.
func migrationsDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	files := map[string]string{
		"001_users.up.sql":   "CREATE TABLE users (id serial PRIMARY KEY, name text NOT NULL UNIQUE);",
		"001_users.down.sql": "DROP TABLE users;",
		"002_seed.up.sql":    "INSERT INTO users (name) VALUES ('alice');",
	}
	for name, sql := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(sql), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// scratchDataDir is a data directory for an embedded server of the test's own.
func scratchDataDir(t *testing.T) string {
	t.Helper()
	base := os.TempDir()
	if fi, err := os.Stat("/dev/shm"); err == nil && fi.IsDir() {
		base = "/dev/shm"
	}
	dir, err := os.MkdirTemp(base, "pgtestproxy-it-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return filepath.Join(dir, "pg")
}

// command runs the binary with args and a deadline, returning stdout, stderr and the
// exit code.
func command(t *testing.T, env []string, args ...string) (string, string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, binary, args...)
	cmd.Env = append(cleanEnv(), env...)
	var out, errs bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errs
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return out.String(), errs.String(), code
}

// cleanEnv is this process's environment without libpq or proxy variables, so what
// a test sees comes from pgtestproxy run.
func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "PG") || strings.HasPrefix(kv, "DATABASE_URL=") {
			continue
		}
		env = append(env, kv)
	}
	return env
}

// freeAddr returns a loopback address with a port nobody listens on right now.
func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// waitAccepting connects until the proxy at addr answers a query or the deadline
// passes: the binary's readiness probe.
func waitAccepting(t *testing.T, addr string, exited <-chan error) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
		c, err := pgx.Connect(ctx, "postgres://probe@"+addr+"/pgtestproxy?sslmode=disable")
		if err == nil {
			c.Close(ctx)
			cancel()
			return
		}
		cancel()
		select {
		case err := <-exited:
			t.Fatalf("proxy exited before accepting clients: %v", err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("proxy at %s not accepting: %v", addr, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
