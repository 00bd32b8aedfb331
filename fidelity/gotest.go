package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// testEvent is one line of `go test -json` (test2json).
type testEvent struct {
	Action  string
	Package string
	Test    string
	Output  string
	Elapsed float64
}

// testResult is one test (or subtest) of one run.
type testResult struct {
	Package string   `json:"package"`
	Test    string   `json:"test"`
	Action  string   `json:"action"` // pass, fail or skip; "" when it started but never ended
	Elapsed float64  `json:"elapsed"`
	Output  []string `json:"output,omitempty"` // kept for tests that did not pass
}

// id names the test across runs.
func (t *testResult) id() string { return t.Package + "." + t.Test }

// runResult is one run of the suite.
type runResult struct {
	Name     string                 `json:"name"`
	DSN      string                 `json:"dsn"`
	Duration time.Duration          `json:"duration_ns"`
	ExitCode int                    `json:"exit_code"`
	Tests    map[string]*testResult `json:"tests"`
	// PackageOutput holds what each package printed outside any test (build errors,
	// panics, timeouts) and its final action.
	PackageOutput map[string][]string `json:"package_output"`
	PackageAction map[string]string   `json:"package_action"`
	// Hung are the top-level tests per package that were still running when the
	// package timed out; the package ran again without them.
	Hung map[string][]string `json:"hung,omitempty"`

	panicked map[string]bool // packages whose test binary has started to panic
}

// maxReruns bounds how often one package is run again after it timed out.
const maxReruns = 3

// runSuite runs pgx's suite with dsn as its database and collects the results. A
// package whose test binary panicked or timed out (a test that hangs, such as one
// waiting for a notification that never comes, or a package slowed past -timeout) runs again
// without the tests that finished and those that hung, so a hang does not hide the rest
// of its package; the hung tests stay "did not finish".
func runSuite(ctx context.Context, opt options, name, dsn string, log io.Writer) (*runResult, error) {
	res, err := goTest(ctx, opt, name, dsn, opt.pkgs, opt.skip, log)
	if err != nil {
		return nil, err
	}
	for _, pkg := range opt.pkgs {
		out := res.PackageOutput[pkg]
		for range maxReruns {
			if !strings.Contains(strings.Join(out, ""), "panic: ") {
				break
			}
			hung := timedOut(out, opt.timeout/2)
			res.Hung[pkg] = append(res.Hung[pkg], hung...)
			skip := append(res.finished(pkg), res.Hung[pkg]...)
			fmt.Fprintf(log, "fidelity: %s: %s panicked or timed out (hung: %s); running it again without the %d tests that ended or hung\n",
				name, pkg, strings.Join(hung, ", "), len(skip))
			again, err := goTest(ctx, opt, name, dsn, []string{pkg}, skipPattern(opt.skip, skip), log)
			if err != nil {
				return nil, err
			}
			res.merge(again)
			out = again.PackageOutput[pkg]
		}
	}
	return res, nil
}

// finished are the top-level tests of pkg that have ended.
func (r *runResult) finished(pkg string) []string {
	var done []string
	for _, t := range r.Tests {
		if t.Package == pkg && t.Action != "" && !strings.Contains(t.Test, "/") {
			done = append(done, t.Test)
		}
	}
	slices.Sort(done)
	return done
}

// goTest runs go test -json over pkgs once.
func goTest(ctx context.Context, opt options, name, dsn string, pkgs []string, skip string, log io.Writer) (*runResult, error) {
	args := []string{"test", "-json", "-count=1", "-timeout", opt.timeout.String(),
		"-p", strconv.Itoa(opt.procs), "-parallel", strconv.Itoa(opt.parallel)}
	if opt.run != "" {
		args = append(args, "-run", opt.run)
	}
	if skip != "" {
		args = append(args, "-skip", skip)
	}
	args = append(args, pkgs...)
	// go test's own -timeout ends a hung package; this bound ends a hung go command. The
	// packages run -p at a time, each up to -timeout, so the command may take that many
	// rounds of -timeout.
	ctx, cancel := context.WithTimeout(ctx, commandBound(opt.timeout, len(pkgs), opt.procs))
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Env = suiteEnv(dsn)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.Stderr = log
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(log, "fidelity: %s: PGX_TEST_DATABASE=%s go %s\n", name, dsn, strings.Join(args, " "))
	began := time.Now()
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	res := &runResult{Name: name, DSN: dsn, Tests: map[string]*testResult{},
		PackageOutput: map[string][]string{}, PackageAction: map[string]string{}, Hung: map[string][]string{},
		panicked: map[string]bool{}}
	perr := res.read(out)
	werr := cmd.Wait()
	res.Duration = time.Since(began)
	res.ExitCode = cmd.ProcessState.ExitCode()
	if perr != nil {
		return nil, fmt.Errorf("read go test -json of %s: %w", name, perr)
	}
	if ctx.Err() != nil {
		return nil, fmt.Errorf("go test of %s: %w (%v)", name, ctx.Err(), werr)
	}
	fmt.Fprintf(log, "fidelity: %s: %d tests in %s (exit %d)\n", name, len(res.Tests),
		res.Duration.Round(time.Second), res.ExitCode)
	return res, nil
}

// commandBound is how long one go test command over n packages run procs at a time
// may take when every package runs up to timeout: the rounds of timeout, plus five
// minutes for building.
func commandBound(timeout time.Duration, n, procs int) time.Duration {
	procs = max(procs, 1)
	rounds := max((n+procs-1)/procs, 1)
	return time.Duration(rounds)*timeout + 5*time.Minute
}

// suiteEnv is this process's environment without the variables that would make runs
// differ (the libpq PG* variables, other PGX_* settings, DATABASE_URL), plus the
// run's DSN in the variables pgx's suite reads for a plain TCP server.
func suiteEnv(dsn string) []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(k, "PG") || k == "DATABASE_URL" {
			continue
		}
		env = append(env, kv)
	}
	return append(env, "PGX_TEST_DATABASE="+dsn, "PGX_TEST_TCP_CONN_STRING="+dsn)
}

// read consumes go test -json output.
func (r *runResult) read(out io.Reader) error {
	sc := bufio.NewScanner(out)
	sc.Buffer(make([]byte, 0, 64<<10), 16<<20)
	for sc.Scan() {
		var ev testEvent
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			continue // a line that is not an event (go test writes build failures as text)
		}
		r.add(ev)
	}
	if err := sc.Err(); err != nil {
		return err
	}
	for _, t := range r.Tests {
		if t.Action == "pass" {
			t.Output = nil
		}
	}
	return nil
}

func (r *runResult) add(ev testEvent) {
	// test2json gives a panic's lines to the test that printed last; they end the whole
	// package, so they are kept with it too.
	if ev.Action == "output" && strings.HasPrefix(ev.Output, "panic: ") {
		r.panicked[ev.Package] = true
	}
	if ev.Test != "" && ev.Action == "output" && r.panicked[ev.Package] {
		r.PackageOutput[ev.Package] = append(r.PackageOutput[ev.Package], ev.Output)
	}
	if ev.Test == "" {
		switch ev.Action {
		case "output":
			r.PackageOutput[ev.Package] = append(r.PackageOutput[ev.Package], ev.Output)
		case "pass", "fail", "skip":
			r.PackageAction[ev.Package] = ev.Action
		}
		return
	}
	test := stableName(ev.Test)
	key := ev.Package + "." + test
	t := r.Tests[key]
	if t == nil {
		t = &testResult{Package: ev.Package, Test: test}
		r.Tests[key] = t
	}
	switch ev.Action {
	case "output":
		t.Output = append(t.Output, ev.Output)
	case "pass", "fail", "skip":
		t.Action, t.Elapsed = ev.Action, ev.Elapsed
	}
}

// merge takes from again the results of the tests that r has not seen finish.
func (r *runResult) merge(again *runResult) {
	for id, t := range again.Tests {
		if old := r.Tests[id]; old == nil || old.Action == "" {
			r.Tests[id] = t
		}
	}
	for pkg, out := range again.PackageOutput {
		r.PackageOutput[pkg] = append(r.PackageOutput[pkg], out...)
	}
	maps.Copy(r.PackageAction, again.PackageAction)
	r.Duration += again.Duration
	r.ExitCode = max(r.ExitCode, again.ExitCode)
}

// timedOut returns the top-level tests that had run for at least minRun when the test
// binary that printed out panicked with "test timed out" (testing lists the running
// tests with their durations after that line).
func timedOut(out []string, minRun time.Duration) []string {
	var hung []string
	in := false
	for _, line := range out {
		l := strings.TrimSpace(line)
		switch {
		case strings.HasPrefix(l, "panic: test timed out"):
			in = true
		case !in || l == "running tests:":
		case strings.HasPrefix(l, "Test") && strings.HasSuffix(l, ")"):
			name, dur, ok := strings.Cut(strings.TrimSuffix(l, ")"), " (")
			d, err := time.ParseDuration(dur)
			top, _, _ := strings.Cut(name, "/")
			if ok && err == nil && d >= minRun && !slices.Contains(hung, top) {
				hung = append(hung, top)
			}
		default:
			in = false
		}
	}
	return hung
}

// skipPattern is a go test -skip pattern for the user's pattern and the tests named.
func skipPattern(user string, tests []string) string {
	quoted := make([]string, len(tests))
	for i, t := range tests {
		quoted[i] = regexp.QuoteMeta(t)
	}
	p := "^(" + strings.Join(quoted, "|") + ")$"
	if user != "" && !strings.Contains(user, "/") {
		p = "(?:" + user + ")|" + p
	}
	return p
}

// longNumber is a run of digits as long as those in os.MkdirTemp's names.
var longNumber = regexp.MustCompile(`\d{6,}`)

// stableName is a test's name without what differs from run to run: subtests named
// after a t.TempDir() path carry its random digits.
func stableName(test string) string {
	return longNumber.ReplaceAllString(test, "N")
}
