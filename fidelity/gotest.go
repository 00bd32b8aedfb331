package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
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
}

// runSuite runs pgx's suite once with dsn as its database and collects the results.
func runSuite(ctx context.Context, opt options, name, dsn string, log io.Writer) (*runResult, error) {
	args := []string{"test", "-json", "-count=1", "-timeout", opt.timeout.String(),
		"-p", strconv.Itoa(opt.procs), "-parallel", strconv.Itoa(opt.parallel)}
	if opt.run != "" {
		args = append(args, "-run", opt.run)
	}
	if opt.skip != "" {
		args = append(args, "-skip", opt.skip)
	}
	args = append(args, opt.pkgs...)
	// go test's own -timeout ends a hung package; this bound ends a hung go command.
	ctx, cancel := context.WithTimeout(ctx, opt.timeout+5*time.Minute)
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
		PackageOutput: map[string][]string{}, PackageAction: map[string]string{}}
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
	if ev.Test == "" {
		switch ev.Action {
		case "output":
			r.PackageOutput[ev.Package] = append(r.PackageOutput[ev.Package], ev.Output)
		case "pass", "fail", "skip":
			r.PackageAction[ev.Package] = ev.Action
		}
		return
	}
	key := ev.Package + "." + ev.Test
	t := r.Tests[key]
	if t == nil {
		t = &testResult{Package: ev.Package, Test: ev.Test}
		r.Tests[key] = t
	}
	switch ev.Action {
	case "output":
		t.Output = append(t.Output, ev.Output)
	case "pass", "fail", "skip":
		t.Action, t.Elapsed = ev.Action, ev.Elapsed
	}
}
