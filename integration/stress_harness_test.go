package integration

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgtestproxy/pgtestproxy/internal/pgserver"
)

// The stress suite (issue 11): the real binary, real pgx clients, a PostgreSQL server
// of the test's own (so it can be restarted, and so counting the clones left is exact).
// Knobs, with short defaults so `make test` runs every scenario; `make stress` runs the
// long form:
//
//	PGTESTPROXY_STRESS_SESSIONS  concurrent client sessions of the load (default 16)
//	PGTESTPROXY_STRESS_SECONDS   how long the load runs (default 3)
//	PGTESTPROXY_STRESS_LOGDIR    a directory to keep each proxy process's log in
const (
	envStressLogDir   = "PGTESTPROXY_STRESS_LOGDIR"
	envStressSessions = "PGTESTPROXY_STRESS_SESSIONS"
	envStressSeconds  = "PGTESTPROXY_STRESS_SECONDS"
)

// stressKnob is the positive integer in the environment variable name, or def.
func stressKnob(name string, def int) int {
	if n, err := strconv.Atoi(os.Getenv(name)); err == nil && n > 0 {
		return n
	}
	return def
}

// stressUpstream is a PostgreSQL server of the test's own on a fixed port, which a
// test can stop and start again where the proxy reconnects.
type stressUpstream struct {
	t   *testing.T
	cfg pgserver.Config
	srv *pgserver.Server
}

func newStressUpstream(t *testing.T, maxConnections int) *stressUpstream {
	t.Helper()
	if os.Getenv("PGTESTPROXY_TEST_DATABASE") != "" {
		t.Skip("the stress suite needs a server of its own (it restarts it and counts every database)")
	}
	base := os.TempDir()
	if fi, err := os.Stat("/dev/shm"); err == nil && fi.IsDir() {
		base = "/dev/shm"
	}
	dir, err := os.MkdirTemp(base, "pgtp-stress-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	u := &stressUpstream{t: t, cfg: pgserver.Config{DataDir: filepath.Join(dir, "data"), Port: port,
		MaxConnections: maxConnections,
		// DDL in the server's log: what was created and dropped, when a scenario leaks.
		Settings: map[string]string{"log_statement": "'ddl'", "log_line_prefix": "'%m [%p] '"}}}
	u.start()
	t.Cleanup(func() {
		u.srv.Close()
		if logs := os.Getenv(envStressLogDir); logs != "" {
			if b, err := os.ReadFile(filepath.Join(u.cfg.DataDir, "server.log")); err == nil {
				_ = os.WriteFile(filepath.Join(logs, strings.ReplaceAll(t.Name(), "/", "_")+"-server.log"), b, 0o644)
			}
		}
	})
	return u
}

func (u *stressUpstream) start() {
	u.t.Helper()
	srv, err := pgserver.Start(u.t.Context(), u.cfg)
	if err != nil {
		u.t.Fatalf("start the stress upstream: %v", err)
	}
	u.srv = srv
}

// restart stops the server (fast shutdown: every backend gets 57P01) and starts it
// again on the same port; it returns when the server answers again.
func (u *stressUpstream) restart() time.Time {
	u.t.Helper()
	if err := u.srv.Close(); err != nil {
		u.t.Fatalf("stop the stress upstream: %v", err)
	}
	u.start()
	return time.Now()
}

func (u *stressUpstream) url(db string) string { return u.srv.ConnString(db) }

// stressCapacity are the flags that make room for sessions clients (clones, sessions,
// a wait for a clone longer than any client's), for a fault scenario whose clients must
// get only the fault's SQLSTATEs, not 53300 for the clone rate of a loaded machine.
func stressCapacity(sessions int) []string {
	return []string{fmt.Sprintf("--max-clones=%d", sessions+16), fmt.Sprintf("--max-sessions=%d", 2*sessions+16),
		"--acquire-timeout=4m"}
}

// proxyProc is a running `pgtestproxy serve` process.
type proxyProc struct {
	t      *testing.T
	addr   string
	cmd    *exec.Cmd
	exited chan error
	logs   string // its stderr, a file
}

// startProxyProc starts the binary on a free port against upstream with the test
// migrations (template "app") and extra flags, and waits until it accepts clients.
func startProxyProc(t *testing.T, upstream, migrations string, extra ...string) *proxyProc {
	t.Helper()
	p := &proxyProc{t: t, addr: freeAddr(t), exited: make(chan error, 1),
		logs: filepath.Join(t.TempDir(), "proxy.log")}
	logf, err := os.Create(p.logs)
	if err != nil {
		t.Fatal(err)
	}
	args := append([]string{"serve", "--listen=" + p.addr, "--upstream=" + upstream,
		"--migrations=app=" + migrations, "--log-format=json"}, extra...)
	p.cmd = exec.Command(binary, args...)
	p.cmd.Env = cleanEnv()
	p.cmd.Stderr = logf
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		p.exited <- p.cmd.Wait()
		logf.Close()
	}()
	t.Cleanup(func() {
		if p.cmd.ProcessState == nil {
			_ = p.cmd.Process.Kill()
			<-p.exited
		}
		if t.Failed() {
			t.Logf("proxy %s log (tail):\n%s", p.addr, tail(p.logs, 40))
		}
		if dir := os.Getenv(envStressLogDir); dir != "" { // keep the whole log
			if b, err := os.ReadFile(p.logs); err == nil {
				_ = os.WriteFile(filepath.Join(dir, strings.ReplaceAll(t.Name(), "/", "_")+"-"+p.addr+".log"), b, 0o644)
			}
		}
	})
	waitAccepting(t, p.addr, p.exited)
	return p
}

// url is a client URL of the proxy for template app in mode, with extra parameters.
func (p *proxyProc) url(mode, extra string) string {
	return "postgres://stress@" + p.addr + "/app?sslmode=disable&mode=" + mode + extra
}

// stop sends SIGTERM and waits for the process to exit.
func (p *proxyProc) stop() {
	p.t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		p.t.Fatal(err)
	}
	select {
	case err := <-p.exited:
		if err != nil {
			p.t.Fatalf("proxy exited with %v after SIGTERM", err)
		}
	case <-time.After(2 * time.Minute):
		p.t.Fatal("proxy did not exit within 2 minutes of SIGTERM")
	}
}

// kill sends SIGKILL and waits for the process to be gone.
func (p *proxyProc) kill() {
	p.t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		p.t.Fatal(err)
	}
	<-p.exited
}

// rssMiB is the process's resident set (VmRSS in /proc/PID/status).
func (p *proxyProc) rssMiB() float64 {
	p.t.Helper()
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", p.cmd.Process.Pid))
	if err != nil {
		p.t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			kb, err := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(rest), " kB"))
			if err != nil {
				p.t.Fatal(err)
			}
			return float64(kb) / 1024
		}
	}
	p.t.Fatal("no VmRSS in /proc status")
	return 0
}

// console runs sql on the admin console and returns its rows as column → text.
func (p *proxyProc) console(sql string) []map[string]string {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.t.Context(), time.Minute)
	defer cancel()
	c, err := pgx.Connect(ctx, "postgres://op@"+p.addr+"/pgtestproxy?sslmode=disable")
	if err != nil {
		p.t.Fatal(err)
	}
	defer c.Close(ctx)
	rows, err := c.Query(ctx, sql, pgx.QueryExecModeSimpleProtocol)
	if err != nil {
		p.t.Fatalf("%s: %v", sql, err)
	}
	defer rows.Close()
	var out []map[string]string
	for rows.Next() {
		row := map[string]string{}
		for i, f := range rows.FieldDescriptions() {
			row[f.Name] = string(rows.RawValues()[i])
		}
		out = append(out, row)
	}
	if err := rows.Err(); err != nil {
		p.t.Fatalf("%s: %v", sql, err)
	}
	return out
}

// goroutines is SHOW STATS' goroutines column.
func (p *proxyProc) goroutines() string { return p.console("SHOW STATS")[0]["goroutines"] }

// clonesMade is SHOW STATS' clones_made: the clones the proxy has created.
func (p *proxyProc) clonesMade() int {
	n, err := strconv.Atoi(p.console("SHOW STATS")[0]["clones_made"])
	if err != nil {
		p.t.Fatalf("SHOW STATS clones_made: %v", err)
	}
	return n
}

// gc runs `pgtestproxy gc` against upstream and returns its summary line.
func gcRun(t *testing.T, upstream, migrations string, extra ...string) string {
	t.Helper()
	out, errs, code := command(t, nil, append([]string{"gc", "--upstream=" + upstream,
		"--migrations=app=" + migrations, "--log-format=json"}, extra...)...)
	if dir := os.Getenv(envStressLogDir); dir != "" {
		name := filepath.Join(dir, strings.ReplaceAll(t.Name(), "/", "_")+"-gc.log")
		if f, err := os.OpenFile(name, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644); err == nil {
			_, _ = f.WriteString(errs)
			f.Close()
		}
	}
	if code != 0 {
		t.Fatalf("gc exited %d: %s", code, errs)
	}
	return strings.TrimSpace(out)
}

// cloneCensus counts the catalog's clones by state, and the leaked: clones in any
// state but ready (after a stop and a gc nothing may be leased, being made or being
// dropped), and databases with the proxy's prefix that the catalog does not list.
type cloneCensus struct {
	ready, leaked int
	detail        string
}

func census(t *testing.T, u *stressUpstream) cloneCensus {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	c, err := pgx.Connect(ctx, u.url("pgtestproxy"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	var r cloneCensus
	err = c.QueryRow(ctx, `SELECT
		count(*) FILTER (WHERE m.state = 'ready'),
		count(*) FILTER (WHERE m.state <> 'ready'),
		coalesce(string_agg(m.datname || ':' || m.state, ' ') FILTER (WHERE m.state <> 'ready'), '')
		FROM catalog_v2.migrated_dbs m`).Scan(&r.ready, &r.leaked, &r.detail)
	if err != nil {
		t.Fatal(err)
	}
	var orphans int
	var names string
	err = c.QueryRow(ctx, `SELECT count(*), coalesce(string_agg(d.datname, ' '), '') FROM pg_database d
		WHERE starts_with(d.datname, 'pgtp_v2_')
		  AND d.datname NOT IN (SELECT datname FROM catalog_v2.migrated_dbs)
		  AND d.datname NOT IN (SELECT datname FROM catalog_v2.template_dbs)`).Scan(&orphans, &names)
	if err != nil {
		t.Fatal(err)
	}
	r.leaked += orphans
	if orphans > 0 {
		r.detail += " not in the catalog: " + names
	}
	return r
}

// tail is the last n lines of the file at path.
func tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
