package integration

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/pgtestproxy/pgtestproxy/internal/testpg"
)

// The matrix: TestSuite/<driver>/<mode>/<case> drives every case through every client
// against a proxy of its own on the test server; TestRunSuiteEmbedded/<language>/<mode>
// runs each language's runner under `pgtestproxy run` with the embedded default, the
// "two commands" story. TestSuiteChild is the Go and psql runner that story starts.

// matrixDrivers lists the clients in matrix order.
var matrixDrivers = append(append([]string{}, goDriverNames...), "psql", "psycopg2", "node-pg")

// envSuiteChild makes the test binary a runner under `pgtestproxy run`: "go" or "psql".
const envSuiteChild = "PGTESTPROXY_SUITE_CHILD"

// The environment every runner reads (besides DATABASE_URL and the libpq variables).
const (
	envSuiteMode  = "PGTESTPROXY_SUITE_MODE"  // db or tx
	envSuiteCases = "PGTESTPROXY_SUITE_CASES" // path of cases.json
	envSuiteRun   = "PGTESTPROXY_SUITE_RUN"   // prefix of session keys
)

func TestSuite(t *testing.T) {
	cases := loadSuite(t)
	for _, driver := range matrixDrivers {
		t.Run(driver, func(t *testing.T) {
			t.Parallel()
			ext, external := externalRunners[driver]
			if external {
				ext.require(t)
			}
			base := startSuiteProxy(t)
			for _, mode := range suiteModes {
				t.Run(mode, func(t *testing.T) {
					runID := newRunID(strings.ReplaceAll(driver, "-", "") + mode)
					if external {
						env := append(proxyClientEnv(base), suiteEnv(t, mode, runID)...)
						ext.run(t, casesFor(cases, mode), env, nil)
						return
					}
					drv := inProcessDriver(driver, base, proxyClientEnv(base))
					for _, c := range casesFor(cases, mode) {
						t.Run(c.Name, func(t *testing.T) { runSuiteCase(t, drv, c, mode, runID) })
					}
				})
			}
		})
	}
}

// TestRunSuiteEmbedded runs each language's runner the way a user would:
// `pgtestproxy run --migrations DIR -- RUNNER`, with no upstream, so the proxy starts
// its own PostgreSQL (all four share one scratch data directory, and so one server).
// Each runner selects the mode itself, its driver's way.
func TestRunSuiteEmbedded(t *testing.T) {
	cases := loadSuite(t)
	dataDir := scratchDataDir(t)
	mig := "--migrations=" + suitePath(t, suiteMigrationsDir)
	for _, lang := range []string{"go", "psql", "psycopg2", "node-pg"} {
		t.Run(lang, func(t *testing.T) {
			t.Parallel()
			ext, external := externalRunners[lang]
			if external {
				ext.require(t)
			}
			for _, mode := range suiteModes {
				t.Run(mode, func(t *testing.T) {
					env := suiteEnv(t, mode, newRunID(strings.ReplaceAll(lang, "-", "")+"run"+mode))
					args := []string{"run", "--data-dir=" + dataDir, mig, "--pool-size=2", "--"}
					if external {
						ext.run(t, casesFor(cases, mode), env, args)
						return
					}
					env = append(env, envSuiteChild+"="+lang)
					self, err := os.Executable()
					if err != nil {
						t.Fatal(err)
					}
					args = append(args, self, "-test.run=^TestSuiteChild$", "-test.v", "-test.count=1")
					runGoChild(t, env, args)
				})
			}
		})
	}
}

// TestSuiteChild is the Go and psql runner under `pgtestproxy run` (started by
// TestRunSuiteEmbedded): it finds the proxy through DATABASE_URL and, for psql, the
// libpq variables run exports.
func TestSuiteChild(t *testing.T) {
	child := os.Getenv(envSuiteChild)
	if child == "" {
		t.Skip("runs under pgtestproxy run, started by TestRunSuiteEmbedded")
	}
	mode, runID := os.Getenv(envSuiteMode), os.Getenv(envSuiteRun)
	base := os.Getenv("DATABASE_URL")
	if base == "" {
		t.Fatal("DATABASE_URL is not set: not started by pgtestproxy run")
	}
	names := []string{"psql"}
	if child == "go" {
		names = goDriverNames
	}
	cases := casesFor(loadSuite(t), mode)
	for _, name := range names {
		// psql takes the libpq variables run exported (nil: this process's own).
		drv := inProcessDriver(name, base, nil)
		t.Run(name, func(t *testing.T) {
			for _, c := range cases {
				t.Run(c.Name, func(t *testing.T) { runSuiteCase(t, drv, c, mode, runID+name) })
			}
		})
	}
}

// inProcessDriver returns the driver this process drives by matrix name: a Go driver
// on baseURL, or psql with the libpq environment psqlEnv.
func inProcessDriver(name, baseURL string, psqlEnv []string) suiteDriver {
	if name == "psql" {
		return psqlDriver{env: psqlEnv}
	}
	return goDrivers(baseURL)[name]
}

// runGoChild runs `pgtestproxy run -- <this test binary> -test.run=^TestSuiteChild$`
// and turns its per-case results into subtests.
func runGoChild(t *testing.T, env, args []string) {
	out, errs, code := command(t, env, args...)
	results := map[string]runnerResult{}
	re := regexp.MustCompile(`^\s*--- (PASS|FAIL|SKIP): TestSuiteChild/([^/\s]+)/(\S+)`)
	var names []string
	for line := range strings.SplitSeq(out, "\n") {
		if m := re.FindStringSubmatch(line); m != nil {
			name := m[2] + "/" + m[3]
			results[name] = runnerResult{status: m[1]}
			names = append(names, name)
		}
	}
	for _, name := range names {
		t.Run(name, func(t *testing.T) {
			switch results[name].status {
			case "FAIL":
				t.Errorf("failed under pgtestproxy run; its output is in the parent's log")
			case "SKIP":
				t.Skip("skipped by the runner")
			}
		})
	}
	if code != 0 || len(names) == 0 {
		t.Errorf("pgtestproxy run exited %d with %d cases reported\nstdout:\n%s\nstderr:\n%s", code, len(names), out, errs)
	}
}

// suiteEnv is the runner's view of the suite.
func suiteEnv(t *testing.T, mode, runID string) []string {
	return []string{
		envSuiteMode + "=" + mode,
		envSuiteCases + "=" + casesPath(t),
		envSuiteRun + "=" + runID,
	}
}

// proxyClientEnv is what `pgtestproxy run` exports, for a proxy the test started.
func proxyClientEnv(base string) []string {
	u, _ := url.Parse(base)
	host, port, _ := net.SplitHostPort(u.Host)
	return []string{
		"DATABASE_URL=" + base,
		"PGHOST=" + host,
		"PGPORT=" + port,
		"PGUSER=" + u.User.Username(),
		"PGDATABASE=" + strings.TrimPrefix(u.Path, "/"),
		"PGSSLMODE=disable",
		"PGTESTPROXY_URL=" + base,
	}
}

// startSuiteProxy runs `pgtestproxy serve` on the test server with the suite's
// migrations until t ends, and returns the URL clients use.
func startSuiteProxy(t *testing.T) string {
	t.Helper()
	addr := freeAddr(t)
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, binary, "serve", "--listen="+addr, "--upstream="+testpg.AdminURL(t),
		"--migrations="+suitePath(t, suiteMigrationsDir), "--pool-size=3", "--log-level=warn")
	cmd.Env = cleanEnv()
	var logs syncBuffer
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		defer cancel()
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case err := <-exited:
			if err != nil {
				t.Errorf("proxy exited with %v; logs:\n%s", err, logs.String())
			}
		case <-time.After(time.Minute):
			t.Errorf("proxy did not stop within a minute of SIGTERM; logs:\n%s", logs.String())
		}
		if t.Failed() {
			t.Logf("proxy logs:\n%s", logs.String())
		}
	})
	waitAccepting(t, addr, exited)
	return "postgres://suite@" + addr + "/suite?sslmode=disable"
}

// --- external runners -----------------------------------------------------------------

// externalRunner is a runner script of another language.
type externalRunner struct {
	argv    func(t *testing.T) []string
	missing func() string // what is missing, or ""
	install string        // how to install it
}

var externalRunners = map[string]externalRunner{
	"psycopg2": {
		argv: func(t *testing.T) []string {
			return []string{debianPython, suitePath(t, "runners/psycopg2_runner.py")}
		},
		missing: func() string {
			if err := exec.Command(debianPython, "-c", "import psycopg2").Run(); err != nil {
				return fmt.Sprintf("%s cannot import psycopg2 (%v)", debianPython, err)
			}
			return ""
		},
		install: "apt-get install python3-psycopg2",
	},
	"node-pg": {
		argv: func(t *testing.T) []string {
			return []string{"node", suitePath(t, "runners/node/runner.js")}
		},
		missing: func() string {
			if _, err := exec.LookPath("node"); err != nil {
				return "node is not on PATH"
			}
			for _, m := range []string{"pg", "pg-copy-streams"} {
				if _, err := os.Stat(filepath.Join("runners/node/node_modules", m, "package.json")); err != nil {
					return "runners/node/node_modules/" + m + " is missing"
				}
			}
			return ""
		},
		install: "apt-get install nodejs npm && (cd integration/runners/node && npm ci)",
	},
}

// debianPython is Debian's interpreter, the one python3-psycopg2 installs for.
const debianPython = "/usr/bin/python3"

// require skips t when the runner's driver is missing on a developer's machine; in CI
// (CI=true) that is a failure.
func (r externalRunner) require(t *testing.T) {
	t.Helper()
	what := r.missing()
	if what == "" {
		return
	}
	testpg.Missing(t, what, r.install)
}

// runnerResult is one case's line from a runner.
type runnerResult struct {
	status string // PASS, FAIL or SKIP
	detail string
}

var runnerLine = regexp.MustCompile(`^(PASS|FAIL|SKIP) ([A-Za-z0-9_]+)(?:: (.*))?$`)

// parseRunnerOutput reads "PASS name", "FAIL name: why" (with indented detail lines
// after it) and "SKIP name: why" lines.
func parseRunnerOutput(out string) map[string]runnerResult {
	results := map[string]runnerResult{}
	last := ""
	sc := bufio.NewScanner(strings.NewReader(out))
	sc.Buffer(make([]byte, 1<<20), 1<<24)
	for sc.Scan() {
		line := sc.Text()
		if m := runnerLine.FindStringSubmatch(line); m != nil {
			results[m[2]] = runnerResult{status: m[1], detail: m[3]}
			last = m[2]
			continue
		}
		if last != "" && strings.HasPrefix(line, "  ") {
			r := results[last]
			r.detail += "\n" + line
			results[last] = r
		}
	}
	return results
}

// run runs the runner, under `pgtestproxy <runArgs…>` when runArgs is not nil, and
// makes a subtest of every case it should have run.
func (r externalRunner) run(t *testing.T, cases []suiteCase, env, runArgs []string) {
	t.Helper()
	var out, errs string
	var code int
	argv := r.argv(t)
	if runArgs != nil {
		out, errs, code = command(t, env, append(runArgs, argv...)...)
	} else {
		ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
		cmd.Env = append(cleanEnv(), env...)
		var o, e bytes.Buffer
		cmd.Stdout, cmd.Stderr = &o, &e
		err := cmd.Run()
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		out, errs = o.String(), e.String()
	}
	results := parseRunnerOutput(out)
	failed := false
	for _, c := range cases {
		t.Run(c.Name, func(t *testing.T) {
			res, ok := results[c.Name]
			switch {
			case !ok:
				failed = true
				t.Errorf("the runner reported nothing for this case")
			case res.status == "FAIL":
				failed = true
				t.Errorf("%s", res.detail)
			case res.status == "SKIP":
				t.Skip(res.detail)
			}
		})
	}
	if code != 0 && !failed {
		t.Errorf("runner exited %d though every case passed", code)
	}
	if code != 0 || failed || t.Failed() {
		t.Logf("runner stdout:\n%s\nstderr:\n%s", out, errs)
	}
}

// syncBuffer is a bytes.Buffer that a process may write while the test reads it.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
