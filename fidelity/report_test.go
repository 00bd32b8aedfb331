package main

import (
	"strings"
	"testing"
	"time"
)

func TestFirstMessage(t *testing.T) {
	tests := []struct {
		name   string
		output []string
		want   string
	}{
		{"t.Fatal", []string{"=== RUN   TestX\n", "    conn_test.go:55: Unable to connect: boom\n", "--- FAIL: TestX (0.00s)\n"},
			"Unable to connect: boom"},
		{"testify error", []string{"    conn_test.go:12: \n", "        \tError Trace:\t/x/conn_test.go:12\n",
			"        \tError:      \tReceived unexpected error:\n", "        \t            \tFATAL: gone (SQLSTATE 08006)\n",
			"        \tTest:       \tTestX\n"},
			"Received unexpected error: FATAL: gone (SQLSTATE 08006)"},
		{"testify not equal", []string{"    a_test.go:3: \n", "        \tError:      \tNot equal: \n",
			"        \t            \texpected: 1\n", "        \t            \tactual  : 0\n", "        \tTest:       \tTestX\n"},
			"Not equal: expected: 1 actual  : 0"},
		{"connect prefix", []string{"    a_test.go:3: failed to connect to `user=postgres database=pgx_test`: 127.0.0.1:5 (127.0.0.1): server error: FATAL: x\n"},
			"connect: server error: FATAL: x"},
		{"panic", []string{"panic: runtime error\n", "goroutine 1\n"}, "panic: runtime error"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := firstMessage(tt.output); got != tt.want {
				t.Errorf("firstMessage = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestBuildReportCountsOnlyDirectPasses(t *testing.T) {
	mk := func(name string, actions map[string]string) *runResult {
		r := &runResult{Name: name, Tests: map[string]*testResult{}, PackageAction: map[string]string{"p": "fail"}}
		for test, a := range actions {
			r.Tests["p."+test] = &testResult{Package: "p", Test: test, Action: a,
				Output: []string{"    x_test.go:1: lost pid 4242\n"}}
		}
		return r
	}
	direct := mk("direct", map[string]string{"A": "pass", "B": "pass", "C": "fail", "D": "pass"})
	proxy := mk("tx", map[string]string{"A": "pass", "B": "fail", "C": "pass", "D": "fail"})
	rep := buildReport([]*runResult{direct, proxy})
	if rep.Baseline != 3 {
		t.Fatalf("baseline = %d, want 3", rep.Baseline)
	}
	rr := rep.Runs[1]
	if rr.Passed != 1 {
		t.Errorf("passed of baseline = %d, want 1 (C passes only through the proxy)", rr.Passed)
	}
	if len(rr.Groups) != 1 || len(rr.Groups[0].Tests) != 2 {
		t.Errorf("groups = %+v, want one cause with B and D", rr.Groups)
	}
}

func TestTimedOut(t *testing.T) {
	out := []string{"=== RUN x\n", "panic: test timed out after 5m0s\n", "\trunning tests:\n",
		"\t\tTestListen (5m0s)\n", "\t\tTestListen/sub (4m59s)\n", "\t\tTestQuick (1s)\n", "\n", "goroutine 1 [running]:\n",
		"\t\tTestNotAList (9m0s)\n"}
	got := timedOut(out, 2*time.Minute)
	if len(got) != 1 || got[0] != "TestListen" {
		t.Errorf("timedOut = %q, want [TestListen]", got)
	}
	if p := skipPattern("", got); p != "^(TestListen)$" {
		t.Errorf("skipPattern = %q", p)
	}
}

// TestReadKeepsTimeoutPanic: test2json gives the timeout panic to the test that printed
// last, even one that passed; the package must still show it.
func TestReadKeepsTimeoutPanic(t *testing.T) {
	stream := `{"Action":"run","Package":"p","Test":"TestHang"}
{"Action":"run","Package":"p","Test":"TestOK"}
{"Action":"pass","Package":"p","Test":"TestOK","Elapsed":0.1}
{"Action":"output","Package":"p","Test":"TestOK","Output":"panic: test timed out after 5m0s\n"}
{"Action":"output","Package":"p","Test":"TestOK","Output":"\trunning tests:\n"}
{"Action":"output","Package":"p","Test":"TestOK","Output":"\t\tTestHang (5m0s)\n"}
{"Action":"output","Package":"p","Output":"FAIL\tp\t300.0s\n"}
{"Action":"fail","Package":"p","Elapsed":300}
`
	r := &runResult{Tests: map[string]*testResult{}, PackageOutput: map[string][]string{},
		PackageAction: map[string]string{}, Hung: map[string][]string{}, panicked: map[string]bool{}}
	if err := r.read(strings.NewReader(stream)); err != nil {
		t.Fatal(err)
	}
	if got := timedOut(r.PackageOutput["p"], time.Minute); len(got) != 1 || got[0] != "TestHang" {
		t.Errorf("timedOut = %q, want [TestHang]", got)
	}
	if c := causeOf(r, "p.TestHang"); c != "did not finish: panic: test timed out after 5m0s" {
		t.Errorf("cause = %q", c)
	}
}

// TestCommandBound: five packages two at a time take up to three rounds of -timeout, so
// the bound on the go command covers them (it was one round, which killed a run whose
// packages were all still within their own -timeout).
func TestCommandBound(t *testing.T) {
	for _, c := range []struct {
		n, procs int
		want     time.Duration
	}{{5, 2, 20 * time.Minute}, {1, 2, 10 * time.Minute}, {4, 2, 15 * time.Minute}, {3, 0, 20 * time.Minute}} {
		if got := commandBound(5*time.Minute, c.n, c.procs); got != c.want {
			t.Errorf("commandBound(5m, %d, %d) = %v, want %v", c.n, c.procs, got, c.want)
		}
	}
}

func TestKindOf(t *testing.T) {
	res := &runResult{Tests: map[string]*testResult{
		"p.TestA": {Action: "fail", Output: []string{"    a_test.go:1: Exec unexpectedly failed with create temporary table foo(\n",
			"id int): ERROR: relation \"foo\" already exists (SQLSTATE 42P07)\n"}},
		"p.TestB": {Action: "fail", Output: []string{"    a_test.go:1: conn.Query failed: FATAL: terminating connection due to administrator command (SQLSTATE 57P01)\n"}},
		"p.TestC": {Action: "fail", Output: []string{"    a_test.go:1: Expected to be in isolation level serializable but was read committed\n"}},
		"p.TestD": {Action: "fail", Output: []string{"    a_test.go:1: Begin failed: ERROR: deadlock detected (SQLSTATE 40P01)\n"}},
		"p.TestE": {Action: "fail", Output: []string{"    a_test.go:1: Not equal: expected: \"pgx\" actual  : \"\"\n"}},
	}}
	for id, want := range map[string]string{
		"p.TestA": "same table name as a parallel test (42P07)", "p.TestB": "backend terminated by a test (57P01)",
		"p.TestC": "isolation level", "p.TestD": "deadlock between two connections of the key (40P01)", "p.TestE": otherKind,
	} {
		if got := kindOf(res, id, causeOf(res, id)); got != want {
			t.Errorf("%s: kind %q, want %q", id, got, want)
		}
	}
}
