package integration

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// The behavioural suite (issue 7): one set of cases, written once as data in
// suite/cases.json, driven through every client in both lease modes. The Go drivers and
// psql run in this process (suite_go_test.go, suite_psql_test.go); Python and Node have
// runners of their own (runners/), whose per-case lines become subtests here
// (suite_runners_test.go). suite/README.md describes the format.

// suiteModes are the lease modes every driver is driven in, in matrix order.
var suiteModes = []string{"db", "tx"}

// Paths of the suite, relative to this package's directory (go test's working dir).
const (
	suiteCasesFile     = "suite/cases.json"
	suiteMigrationsDir = "suite/migrations"
)

type suiteFile struct {
	About []string    `json:"about"`
	Cases []suiteCase `json:"cases"`
}

// suiteCase is one behaviour: connections, and steps on them with expectations.
type suiteCase struct {
	Name  string              `json:"name"`
	Doc   string              `json:"doc"`
	Modes []string            `json:"modes"` // empty: every mode
	Needs []string            `json:"needs"` // driver capabilities the case needs
	Conns map[string]connSpec `json:"conns"`
	Steps []suiteStep         `json:"steps"`
}

// connSpec describes one of a case's connections.
type connSpec struct {
	Session  string `json:"session"`  // session key (made unique per run); empty: a lease of its own
	Pool     bool   `json:"pool"`     // use the driver's connection pool
	Timezone string `json:"timezone"` // TimeZone, set through the connection's options
}

// suiteStep is one action on one connection and what it must give.
type suiteStep struct {
	Conn       string     `json:"conn"`
	Do         string     `json:"do"` // "" means "query"
	SQL        string     `json:"sql"`
	Params     []value    `json:"params"`
	Name       string     `json:"name"`      // prepare / execute
	Isolation  string     `json:"isolation"` // begin
	Table      string     `json:"table"`     // copy_in
	Columns    []string   `json:"columns"`   // copy_in
	Data       [][]value  `json:"data"`      // copy_in
	Statements []string   `json:"statements"`
	AfterMS    int        `json:"after_ms"` // cancel
	Parallel   int        `json:"parallel"`
	Modes      []string   `json:"modes"`
	Rows       *[][]value `json:"rows"`
	RowCount   *int       `json:"row_count"`
	Error      string     `json:"error"`
	Constraint string     `json:"constraint"`
	Save       string     `json:"save"`
	SameAs     string     `json:"same_as"`
	DiffersFrm string     `json:"differs_from"`
	Doc        string     `json:"doc"`
}

// loadSuite reads the cases: suite/cases.json, or the file PGTESTPROXY_SUITE_CASES
// names (a runner's view, so a changed copy can be tried on every runner).
func loadSuite(t testing.TB) []suiteCase {
	t.Helper()
	b, err := os.ReadFile(casesPath(t))
	if err != nil {
		t.Fatal(err)
	}
	var f suiteFile
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&f); err != nil {
		t.Fatalf("%s: %v", casesPath(t), err)
	}
	return f.Cases
}

// casesPath is the absolute path of the cases file in use.
func casesPath(t testing.TB) string {
	t.Helper()
	if p := os.Getenv(envSuiteCases); p != "" {
		return p
	}
	return suitePath(t, suiteCasesFile)
}

// inMode reports whether something limited to modes runs in mode.
func inMode(modes []string, mode string) bool {
	return len(modes) == 0 || slices.Contains(modes, mode)
}

// casesFor returns the cases that run in mode.
func casesFor(cases []suiteCase, mode string) []suiteCase {
	var out []suiteCase
	for _, c := range cases {
		if inMode(c.Modes, mode) {
			out = append(out, c)
		}
	}
	return out
}

// sessionKey is the key a case's connection sends: unique per run and case, so runs
// and cases never share a lease by accident.
func sessionKey(runID, caseName, session string) string {
	if session == "" {
		return ""
	}
	return runID + "-" + caseName + "-" + session
}

// newRunID returns a fresh prefix for session keys.
func newRunID(prefix string) string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return prefix + hex.EncodeToString(b[:])
}

// suitePath returns an absolute path for a file of the suite.
func suitePath(t testing.TB, rel string) string {
	t.Helper()
	p, err := filepath.Abs(rel)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// --- values ---------------------------------------------------------------------

type valueKind int

const (
	kindNull valueKind = iota
	kindText
	kindInstant
)

// value is a parameter, an expected cell or an actual one: NULL, text, or an instant
// (a timestamptz the driver handed over in its own time type).
type value struct {
	kind    valueKind
	text    string
	instant time.Time
	desc    string // how it was written, for messages about long values
}

func (v *value) UnmarshalJSON(b []byte) error {
	var raw any
	if err := json.Unmarshal(b, &raw); err != nil {
		return err
	}
	switch x := raw.(type) {
	case nil:
		*v = value{kind: kindNull}
	case string:
		*v = value{kind: kindText, text: x}
	case map[string]any:
		if s, ok := x["repeat"].(string); ok {
			n, _ := x["times"].(float64)
			*v = value{kind: kindText, text: strings.Repeat(s, int(n)), desc: fmt.Sprintf("%q × %d", s, int(n))}
			return nil
		}
		if s, ok := x["instant"].(string); ok {
			ts, err := time.Parse(time.RFC3339Nano, s)
			if err != nil {
				return fmt.Errorf("instant %q: %w", s, err)
			}
			*v = value{kind: kindInstant, instant: ts}
			return nil
		}
		return fmt.Errorf("unknown value %s", b)
	default:
		return fmt.Errorf("unknown value %s", b)
	}
	return nil
}

func (v value) String() string {
	switch v.kind {
	case kindNull:
		return "NULL"
	case kindInstant:
		return "instant " + v.instant.UTC().Format("2006-01-02T15:04:05.000000Z")
	}
	if v.desc != "" {
		return v.desc
	}
	if len(v.text) > 80 {
		return fmt.Sprintf("%q… (%d bytes)", v.text[:40], len(v.text))
	}
	return fmt.Sprintf("%q", v.text)
}

// goValue is v as a Go driver parameter.
func (v value) goValue() any {
	switch v.kind {
	case kindNull:
		return nil
	case kindInstant:
		return v.instant
	}
	return v.text
}

// goValues converts parameters for a Go driver.
func goValues(vs []value) []any {
	out := make([]any, len(vs))
	for i, v := range vs {
		out[i] = v.goValue()
	}
	return out
}

// cellOf turns what a Go driver returned into a value.
func cellOf(x any) value {
	switch y := x.(type) {
	case nil:
		return value{kind: kindNull}
	case string:
		return value{kind: kindText, text: y}
	case []byte:
		return value{kind: kindText, text: string(y)}
	case time.Time:
		return value{kind: kindInstant, instant: y}
	}
	return value{kind: kindText, text: fmt.Sprint(x)}
}

// pgTimestamptzLayouts are the text forms of timestamptz in PostgreSQL's ISO DateStyle.
var pgTimestamptzLayouts = []string{"2006-01-02 15:04:05.999999999-07", "2006-01-02 15:04:05.999999999-07:00"}

// sameValue compares an expected value with an actual one. An expected instant
// matches a driver's time value at the same instant, or PostgreSQL's text for it.
func sameValue(want, got value) bool {
	if want.kind == kindInstant && got.kind == kindText {
		for _, layout := range pgTimestamptzLayouts {
			if ts, err := time.Parse(layout, got.text); err == nil {
				got = value{kind: kindInstant, instant: ts}
				break
			}
		}
	}
	if want.kind != got.kind {
		return false
	}
	switch want.kind {
	case kindText:
		return want.text == got.text
	case kindInstant:
		return want.instant.Equal(got.instant)
	}
	return true
}

// diffRows describes how got differs from want, or returns "".
func diffRows(want, got [][]value) string {
	if len(want) != len(got) {
		return fmt.Sprintf("got %d rows, want %d: got %s", len(got), len(want), rowsString(got))
	}
	for i := range want {
		if len(want[i]) != len(got[i]) {
			return fmt.Sprintf("row %d has %d columns, want %d: %s", i, len(got[i]), len(want[i]), rowsString(got))
		}
		for j := range want[i] {
			if !sameValue(want[i][j], got[i][j]) {
				return fmt.Sprintf("row %d column %d is %s, want %s", i, j, got[i][j], want[i][j])
			}
		}
	}
	return ""
}

func rowsString(rows [][]value) string {
	if len(rows) > 5 {
		return fmt.Sprintf("%s … (%d rows)", rowsString(rows[:5]), len(rows))
	}
	parts := make([]string, len(rows))
	for i, r := range rows {
		cells := make([]string, len(r))
		for j, c := range r {
			cells[j] = c.String()
		}
		parts[i] = "(" + strings.Join(cells, ", ") + ")"
	}
	return "[" + strings.Join(parts, " ") + "]"
}

// parseCopyText parses COPY's text format as the suite uses it (no escapes but \N).
func parseCopyText(s string) [][]value {
	var rows [][]value
	for line := range strings.SplitSeq(strings.TrimSuffix(s, "\n"), "\n") {
		if line == "" && s == "" {
			break
		}
		var row []value
		for f := range strings.SplitSeq(line, "\t") {
			if f == `\N` {
				row = append(row, value{kind: kindNull})
			} else {
				row = append(row, value{kind: kindText, text: f})
			}
		}
		rows = append(rows, row)
	}
	return rows
}

// --- drivers ----------------------------------------------------------------------

// connOptions is what a driver needs to open one of a case's connections.
type connOptions struct {
	mode     string
	session  string // full key; empty: a lease of its own
	timezone string
	pool     bool
}

// suiteDriver is a client the suite drives from Go: a Go driver, or psql.
type suiteDriver interface {
	// caps are the optional capabilities it has ("copy_in", "copy_out", "cancel").
	caps() []string
	open(ctx context.Context, o connOptions) (suiteConn, error)
}

// suiteConn is one of a case's connections, the driver's way.
type suiteConn interface {
	query(ctx context.Context, sql string, params []value) ([][]value, error)
	begin(ctx context.Context, isolation string) error
	commit(ctx context.Context) error
	rollback(ctx context.Context) error
	prepare(ctx context.Context, name, sql string) error
	execute(ctx context.Context, name string, params []value) ([][]value, error)
	copyIn(ctx context.Context, table string, columns []string, data [][]value) error
	copyOut(ctx context.Context, sql string) ([][]value, error)
	batch(ctx context.Context, statements []string) error
	// cancel runs sql and cancels it the driver's way after the delay.
	cancel(ctx context.Context, sql string, after time.Duration) error
	// parallel runs sql n times at once where the driver can (a pool), else in turn.
	parallel(ctx context.Context, n int, sql string) ([][][]value, error)
	reconnect(ctx context.Context) error
	close() error
	// errorInfo returns the SQLSTATE and constraint of err when err is the driver's
	// own error type for a server error, and ok false otherwise.
	errorInfo(err error) (code, constraint string, ok bool)
}

// stepTimeout bounds each step; the slowest (a cancelled 30 s sleep) takes 0.3 s.
const stepTimeout = time.Minute

// runSuiteCase drives one case through a driver and fails t at the first step that
// does not give what the case expects.
func runSuiteCase(t *testing.T, d suiteDriver, c suiteCase, mode, runID string) {
	for _, need := range c.Needs {
		if !slices.Contains(d.caps(), need) {
			t.Skipf("n/a: the driver has no %s", need)
		}
	}
	conns := map[string]suiteConn{}
	t.Cleanup(func() {
		for _, cn := range conns {
			_ = cn.close()
		}
	})
	saved := map[string]string{}
	for i, st := range c.Steps {
		if !inMode(st.Modes, mode) {
			continue
		}
		if err := runCaseStep(t.Context(), d, c, st, conns, mode, runID, saved); err != nil {
			t.Fatalf("step %d (%s on %s): %v", i, describeStep(st), st.Conn, err)
		}
	}
}

// runCaseStep opens the step's connection when it is its first, and runs the step.
func runCaseStep(ctx context.Context, d suiteDriver, c suiteCase, st suiteStep, conns map[string]suiteConn,
	mode, runID string, saved map[string]string) error {
	ctx, cancel := context.WithTimeout(ctx, stepTimeout)
	defer cancel()
	cn := conns[st.Conn]
	if cn == nil && st.Do != "close" {
		spec, ok := c.Conns[st.Conn]
		if !ok {
			return fmt.Errorf("connection %q is not declared", st.Conn)
		}
		var err error
		cn, err = d.open(ctx, connOptions{mode: mode, session: sessionKey(runID, c.Name, spec.Session),
			timezone: spec.Timezone, pool: spec.Pool})
		if err != nil {
			return fmt.Errorf("connect: %w", err)
		}
		conns[st.Conn] = cn
	}
	if st.Do == "close" {
		delete(conns, st.Conn)
	}
	return runStep(ctx, cn, st, saved)
}

func describeStep(st suiteStep) string {
	do := st.Do
	if do == "" {
		do = "query"
	}
	switch {
	case st.SQL != "":
		sql := st.SQL
		if len(sql) > 70 {
			sql = sql[:70] + "…"
		}
		return fmt.Sprintf("%s %q", do, sql)
	case st.Name != "":
		return do + " " + st.Name
	}
	return do
}

// runStep performs one step and checks what it gave.
func runStep(ctx context.Context, cn suiteConn, st suiteStep, saved map[string]string) error {
	var rows [][]value
	var err error
	switch st.Do {
	case "", "query":
		if st.Parallel > 0 {
			return checkParallel(ctx, cn, st)
		}
		rows, err = cn.query(ctx, st.SQL, st.Params)
	case "begin":
		err = cn.begin(ctx, st.Isolation)
	case "commit":
		err = cn.commit(ctx)
	case "rollback":
		err = cn.rollback(ctx)
	case "prepare":
		err = cn.prepare(ctx, st.Name, st.SQL)
	case "execute":
		rows, err = cn.execute(ctx, st.Name, st.Params)
	case "copy_in":
		err = cn.copyIn(ctx, st.Table, st.Columns, st.Data)
	case "copy_out":
		rows, err = cn.copyOut(ctx, st.SQL)
	case "batch":
		err = cn.batch(ctx, st.Statements)
	case "cancel":
		start := time.Now()
		err = cn.cancel(ctx, st.SQL, time.Duration(st.AfterMS)*time.Millisecond)
		if took := time.Since(start); took > 10*time.Second {
			return fmt.Errorf("the cancelled query took %s: the cancel did not reach its backend", took)
		}
	case "reconnect":
		err = cn.reconnect(ctx)
	case "close":
		if cn != nil {
			err = cn.close()
		}
	default:
		return fmt.Errorf("unknown step %q", st.Do)
	}
	return checkOutcome(cn, st, rows, err, saved)
}

// checkParallel runs a parallel query step: every run must succeed with the rows.
func checkParallel(ctx context.Context, cn suiteConn, st suiteStep) error {
	all, err := cn.parallel(ctx, st.Parallel, st.SQL)
	if err != nil {
		return err
	}
	for i, rows := range all {
		if st.Rows == nil {
			continue
		}
		if d := diffRows(*st.Rows, rows); d != "" {
			return fmt.Errorf("parallel query %d: %s", i, d)
		}
	}
	return nil
}

// checkOutcome compares what a step gave with what it expects.
func checkOutcome(cn suiteConn, st suiteStep, rows [][]value, err error, saved map[string]string) error {
	if st.Error != "" {
		if err == nil {
			return fmt.Errorf("succeeded, want SQLSTATE %s", st.Error)
		}
		code, constraint, ok := cn.errorInfo(err)
		if !ok {
			return fmt.Errorf("error %v (%T) is not the driver's error type for a server error (want SQLSTATE %s)", err, err, st.Error)
		}
		if code != st.Error {
			return fmt.Errorf("SQLSTATE %s (%v), want %s", code, err, st.Error)
		}
		if st.Constraint != "" && constraint != st.Constraint {
			return fmt.Errorf("constraint %q, want %q (%v)", constraint, st.Constraint, err)
		}
		return nil
	}
	if err != nil {
		return err
	}
	if st.Rows != nil {
		if d := diffRows(*st.Rows, rows); d != "" {
			return fmt.Errorf("%s", d)
		}
	}
	if st.RowCount != nil && len(rows) != *st.RowCount {
		return fmt.Errorf("got %d rows, want %d", len(rows), *st.RowCount)
	}
	if st.Save == "" && st.SameAs == "" && st.DiffersFrm == "" {
		return nil
	}
	if len(rows) != 1 || len(rows[0]) != 1 || rows[0][0].kind != kindText {
		return fmt.Errorf("want one text value to compare, got %s", rowsString(rows))
	}
	got := rows[0][0].text
	switch {
	case st.Save != "":
		saved[st.Save] = got
	case st.SameAs != "" && got != saved[st.SameAs]:
		return fmt.Errorf("got %q, want the same as %s (%q)", got, st.SameAs, saved[st.SameAs])
	case st.DiffersFrm != "" && got == saved[st.DiffersFrm]:
		return fmt.Errorf("got %q, want something other than %s", got, st.DiffersFrm)
	}
	return nil
}
