package pgserver

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"go.uber.org/zap/zaptest"
)

// requireInstalled skips nothing: a machine without PostgreSQL fails these tests, as CI
// must install it (.ci/run).
func requireInstalled(t *testing.T) string {
	t.Helper()
	dir, err := FindBinDir()
	if err != nil {
		t.Fatal(err)
	}
	return dir
}

// scratchDataDir returns a data directory path on the tmpfs (where the server user can
// reach it), removed after the test.
func scratchDataDir(t *testing.T) string {
	t.Helper()
	base := os.TempDir()
	if _, ok := tmpfsFree("/dev/shm"); ok {
		base = "/dev/shm"
	}
	dir, err := os.MkdirTemp(base, "pgserver-test-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return filepath.Join(dir, "data")
}

func start(t *testing.T, dataDir string) *Server {
	t.Helper()
	s, err := Start(t.Context(), Config{DataDir: dataDir, Logger: zaptest.NewLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func exec1(t *testing.T, s *Server, sql string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	c, err := pgx.Connect(ctx, s.ConnString("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	var out string
	if err := c.QueryRow(ctx, sql).Scan(&out); err != nil && !errors.Is(err, pgx.ErrNoRows) {
		t.Fatalf("%s: %v", sql, err)
	}
	return out
}

// requireGone fails unless pid is no longer a running process.
func requireGone(t *testing.T, pid int) {
	t.Helper()
	if pid == 0 {
		t.Fatal("no pid recorded")
	}
	if (pidFile{pid: pid}).alive() {
		t.Fatalf("postgres pid %d still running after Close", pid)
	}
}

func TestColdAndWarmStart(t *testing.T) {
	requireInstalled(t)
	dataDir := scratchDataDir(t)

	began := time.Now()
	s := start(t, dataDir)
	cold := time.Since(began)
	if !s.Started() {
		t.Fatal("first launcher did not start the server")
	}
	for setting, want := range map[string]string{"fsync": "off", "synchronous_commit": "off",
		"full_page_writes": "off", "max_connections": "300", "server_encoding": "UTF8",
		"listen_addresses": "127.0.0.1", "unix_socket_directories": dataDir} {
		if got := exec1(t, s, "SELECT current_setting('"+setting+"')"); got != want {
			t.Errorf("%s = %q, want %q", setting, got, want)
		}
	}
	if _, err := os.Stat(filepath.Join(dataDir, "server.log")); err != nil {
		t.Errorf("server log not in the data directory: %v", err)
	}
	exec1(t, s, "CREATE DATABASE survives")
	pid := s.PID()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	requireGone(t, pid)
	if err := s.Close(); err != nil { // idempotent
		t.Fatal(err)
	}

	began = time.Now()
	s = start(t, dataDir)
	warm := time.Since(began)
	if got := exec1(t, s, "SELECT datname FROM pg_database WHERE datname = 'survives'"); got != "survives" {
		t.Fatal("database created in the first run is gone after a warm start")
	}
	t.Logf("cold start (initdb + start) %v, warm start %v", cold.Round(time.Millisecond), warm.Round(time.Millisecond))
	pid = s.PID()
	s.Close()
	requireGone(t, pid)
}

func TestStartAfterKilledServer(t *testing.T) {
	requireInstalled(t)
	dataDir := scratchDataDir(t)
	s := start(t, dataDir)
	pid := s.PID()
	// Kill the postmaster the hard way and forget the launcher, as a crashed run would.
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitGone(t, pid)
	s.users.unlock()
	if _, err := os.Stat(filepath.Join(dataDir, "postmaster.pid")); err != nil {
		t.Fatalf("expected a stale postmaster.pid: %v", err)
	}

	s2 := start(t, dataDir)
	if !s2.Started() {
		t.Fatal("launcher attached to a dead server instead of starting it")
	}
	if got := exec1(t, s2, "SELECT 'ok'"); got != "ok" {
		t.Fatal(got)
	}
	pid2 := s2.PID()
	s2.Close()
	requireGone(t, pid2)
}

func TestStartWithForeignPidInPidFile(t *testing.T) {
	requireInstalled(t)
	dataDir := scratchDataDir(t)
	s := start(t, dataDir)
	pid := s.PID()
	s.Close()
	requireGone(t, pid)
	// A pid file naming a live process that is not postgres (this test binary).
	stale := fmt.Sprintf("%d\n%s\n0\n5432\n\n\n\n", os.Getpid(), dataDir)
	if err := os.WriteFile(filepath.Join(dataDir, "postmaster.pid"), []byte(stale), 0o600); err != nil {
		t.Fatal(err)
	}
	s2 := start(t, dataDir)
	if !s2.Started() || exec1(t, s2, "SELECT 'ok'") != "ok" {
		t.Fatal("did not start over a stale pid file")
	}
}

func TestRunsAsUnprivilegedUserWhenRoot(t *testing.T) {
	requireInstalled(t)
	if os.Geteuid() != 0 {
		t.Skip("privilege drop applies only when running as root; this run is not root")
	}
	dataDir := scratchDataDir(t)
	s := start(t, dataDir)
	uid := processUID(t, s.PID())
	if uid == 0 {
		t.Fatal("postgres runs as root")
	}
	var st syscall.Stat_t
	if err := syscall.Stat(dataDir, &st); err != nil {
		t.Fatal(err)
	}
	if int(st.Uid) != uid {
		t.Fatalf("data directory owned by uid %d, server runs as uid %d", st.Uid, uid)
	}
}

func processUID(t *testing.T, pid int) int {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if f := strings.Fields(line); len(f) > 1 && f[0] == "Uid:" {
			uid, _ := strconv.Atoi(f[1])
			return uid
		}
	}
	t.Fatal("no Uid in /proc status")
	return -1
}

func TestRacingLaunchers(t *testing.T) {
	requireInstalled(t)
	dataDir := scratchDataDir(t)
	const n = 4
	servers := make([]*Server, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			servers[i], errs[i] = Start(t.Context(), Config{DataDir: dataDir})
		})
	}
	wg.Wait()
	started := 0
	for i, s := range servers {
		if errs[i] != nil {
			t.Fatalf("launcher %d: %v", i, errs[i])
		}
		if s.Started() {
			started++
		}
		if s.Port() != servers[0].Port() {
			t.Fatalf("launchers on different ports: %d vs %d", s.Port(), servers[0].Port())
		}
	}
	if started != 1 {
		t.Fatalf("%d launchers started a server, want exactly 1", started)
	}
	pid := servers[0].PID()
	for _, s := range servers[:n-1] {
		s.Close()
		if got := exec1(t, servers[n-1], "SELECT 'up'"); got != "up" {
			t.Fatal("server stopped while another launcher still holds it")
		}
	}
	servers[n-1].Close()
	requireGone(t, pid)
}

// TestRacingProcesses races launchers in separate OS processes (this test binary re-run
// in helper mode) on one data directory.
func TestRacingProcesses(t *testing.T) {
	requireInstalled(t)
	dataDir := scratchDataDir(t)
	const n = 3
	type helper struct {
		cmd   *exec.Cmd
		stdin interface{ Close() error }
		line  string
	}
	helpers := make([]*helper, n)
	lines := make(chan error, n)
	for i := range n {
		cmd := exec.Command(os.Args[0], "-test.run=^TestHelperProcess$")
		cmd.Env = append(os.Environ(), "PGSERVER_HELPER_DATADIR="+dataDir)
		stdin, _ := cmd.StdinPipe()
		stdout, _ := cmd.StdoutPipe()
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		h := &helper{cmd: cmd, stdin: stdin}
		helpers[i] = h
		go func() {
			sc := bufio.NewScanner(stdout)
			for sc.Scan() {
				if strings.HasPrefix(sc.Text(), "READY ") {
					h.line = sc.Text()
					lines <- nil
					drainScanner(sc)
					return
				}
			}
			lines <- fmt.Errorf("helper exited without READY")
		}()
	}
	for range n {
		if err := <-lines; err != nil {
			t.Fatal(err)
		}
	}
	started, port := 0, ""
	for _, h := range helpers {
		f := strings.Fields(h.line) // READY <port> <started> <pid>
		if f[2] == "true" {
			started++
		}
		if port != "" && f[1] != port {
			t.Fatalf("helpers on different ports: %s vs %s", port, f[1])
		}
		port = f[1]
	}
	if started != 1 {
		t.Fatalf("%d processes started a server, want exactly 1", started)
	}
	pid, _ := strconv.Atoi(strings.Fields(helpers[0].line)[3])
	for _, h := range helpers {
		h.stdin.Close()
		if err := h.cmd.Wait(); err != nil {
			t.Fatalf("helper: %v", err)
		}
	}
	requireGone(t, pid)
}

func drainScanner(sc *bufio.Scanner) {
	for sc.Scan() {
	}
}

// TestHelperProcess is the body of TestRacingProcesses' child processes.
func TestHelperProcess(t *testing.T) {
	dataDir := os.Getenv("PGSERVER_HELPER_DATADIR")
	if dataDir == "" {
		t.Skip("helper for TestRacingProcesses")
	}
	s, err := Start(context.Background(), Config{DataDir: dataDir})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	fmt.Printf("READY %d %v %d\n", s.Port(), s.Started(), s.PID())
	_, _ = bufio.NewReader(os.Stdin).ReadString('\n') // until the parent closes stdin
	if err := s.Close(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(3)
	}
	os.Exit(0)
}

func TestContextCancelStopsServer(t *testing.T) {
	requireInstalled(t)
	ctx, cancel := context.WithCancel(t.Context())
	s, err := Start(ctx, Config{DataDir: scratchDataDir(t)})
	if err != nil {
		t.Fatal(err)
	}
	pid := s.PID()
	cancel()
	<-s.watchDone
	requireGone(t, pid)
}

func waitGone(t *testing.T, pid int) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for (pidFile{pid: pid}).alive() {
		if time.Now().After(deadline) {
			t.Fatalf("pid %d did not exit", pid)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestOnStartRunsOnlyForTheStarter(t *testing.T) {
	requireInstalled(t)
	dataDir := scratchDataDir(t)
	var calls []string
	onStart := func(ctx context.Context, admin string) error {
		calls = append(calls, admin)
		return nil
	}
	first, err := Start(t.Context(), Config{DataDir: dataDir, OnStart: onStart})
	if err != nil {
		t.Fatal(err)
	}
	defer first.Close()
	second, err := Start(t.Context(), Config{DataDir: dataDir, OnStart: onStart})
	if err != nil {
		t.Fatal(err)
	}
	defer second.Close()
	if len(calls) != 1 || calls[0] != first.ConnString("postgres") {
		t.Fatalf("OnStart calls %q, want one, for the launcher that started the server", calls)
	}
	_, err = Start(t.Context(), Config{DataDir: scratchDataDir(t), OnStart: func(context.Context, string) error {
		return errors.New("refused")
	}})
	if err == nil || !strings.Contains(err.Error(), "refused") {
		t.Fatalf("Start with a failing OnStart: %v", err)
	}
}
