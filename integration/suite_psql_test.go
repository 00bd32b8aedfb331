package integration

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// The psql driver of the suite: each of a case's connections is one psql process
// (libpq) reading a script from its standard input, as `psql -f -` would, with the
// mode, session key and time zone in PGOPTIONS and everything else from the libpq
// variables `pgtestproxy run` exports. After every step the script echoes a marker
// on stdout and stderr, so the driver reads exactly that step's output: rows in
// unaligned mode with control characters as separators, errors with VERBOSITY
// verbose (SQLSTATE and constraint name). Errors do not stop the script
// (ON_ERROR_STOP is off), as the suite goes on after them.

// psql's output separators and NULL marker: characters the suite's values never hold.
const (
	psqlFieldSep  = "\x1f"
	psqlRecordSep = "\x1e"
	psqlNull      = "\x01NULL\x01"
)

type psqlDriver struct {
	// env is the libpq environment (PGHOST, PGPORT, …) to add to this process's, or
	// nil to use this process's own (under `pgtestproxy run`).
	env []string
}

func (psqlDriver) caps() []string { return []string{"copy_in", "copy_out", "cancel"} }

func (d psqlDriver) open(ctx context.Context, o connOptions) (suiteConn, error) {
	env := os.Environ()
	if d.env != nil {
		env = append(cleanEnv(), d.env...) // none of the developer's own PG* settings
	}
	env = append(env, "PGOPTIONS="+libpqOptions(o))
	c := &psqlConn{env: env}
	return c, c.start(ctx)
}

// psqlError is a server error as psql printed it.
type psqlError struct {
	code, constraint string
	text             string
}

func (e *psqlError) Error() string { return strings.TrimSpace(e.text) }

type psqlConn struct {
	env    []string
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	out    *os.File // stdout's read end
	stdout *bufio.Reader
	stderr chan string // lines; closed at EOF
	exited chan struct{}
	n      int // markers written
}

func (c *psqlConn) start(ctx context.Context) error {
	cmd := exec.Command("psql", "-X", "-q", "-A", "-t", "-F", psqlFieldSep, "-R", psqlRecordSep,
		"-P", "null="+psqlNull, "-v", "VERBOSITY=verbose", "-v", "ON_ERROR_STOP=0")
	cmd.Env = c.env
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return err
	}
	// Pipes of our own rather than StdoutPipe/StderrPipe: Wait closes those as soon
	// as psql exits, losing what it wrote last (the error of a cancelled statement).
	outR, outW, err := os.Pipe()
	if err != nil {
		return err
	}
	errR, errW, err := os.Pipe()
	if err != nil {
		outR.Close()
		outW.Close()
		return err
	}
	cmd.Stdout, cmd.Stderr = outW, errW
	err = cmd.Start()
	outW.Close()
	errW.Close()
	if err != nil {
		outR.Close()
		errR.Close()
		return err
	}
	c.cmd, c.stdin, c.out, c.stdout = cmd, stdin, outR, bufio.NewReader(outR)
	c.stderr, c.exited = make(chan string, 64), make(chan struct{})
	go func() {
		defer close(c.stderr)
		defer errR.Close()
		sc := bufio.NewScanner(errR)
		sc.Buffer(make([]byte, 64<<10), 64<<20)
		for sc.Scan() {
			c.stderr <- sc.Text()
		}
	}()
	go func() { _ = cmd.Wait(); close(c.exited) }()
	// A first round trip: psql connects before it reads its script.
	_, err = c.run(ctx, "SELECT 1;")
	return err
}

// run sends one step's script and returns what it printed on stdout; a server error
// it printed is returned as a *psqlError.
func (c *psqlConn) run(ctx context.Context, script string) (string, error) {
	if c.cmd == nil {
		if err := c.start(ctx); err != nil {
			return "", err
		}
	}
	c.n++
	marker := fmt.Sprintf("@@pgtestproxy-step-%d@@", c.n)
	if !strings.HasSuffix(script, "\n") {
		script += "\n"
	}
	script += `\echo ` + marker + "\n" + `\warn ` + marker + "\n"
	written := make(chan error, 1)
	go func() { _, err := io.WriteString(c.stdin, script); written <- err }()
	type result struct {
		out string
		err error
	}
	done := make(chan result, 1)
	go func() {
		out, err := c.readOutput(marker)
		done <- result{out, err}
	}()
	select {
	case r := <-done:
		if err := <-written; err != nil && r.err == nil {
			r.err = err
		}
		return r.out, r.err
	case <-ctx.Done():
		c.kill()
		return "", fmt.Errorf("psql did not answer: %w", ctx.Err())
	}
}

// readOutput reads stdout and stderr up to the step's marker.
func (c *psqlConn) readOutput(marker string) (string, error) {
	var out strings.Builder
	for {
		line, err := c.stdout.ReadString('\n')
		out.WriteString(line)
		s := out.String()
		if s == marker+"\n" || strings.HasSuffix(s, "\n"+marker+"\n") {
			s = strings.TrimSuffix(s, marker+"\n")
			return s, c.readErrors(marker)
		}
		if err != nil {
			return "", fmt.Errorf("psql exited: %w; stderr: %s", err, c.drainErrors())
		}
	}
}

var (
	psqlErrorLine      = regexp.MustCompile(`^(?:psql:[^ ]* )?(?:ERROR|FATAL):  ([0-9A-Z]{5}): `)
	psqlConstraintLine = regexp.MustCompile(`^CONSTRAINT NAME:  (.*)$`)
)

// readErrors reads stderr up to marker and returns the first server error in it.
func (c *psqlConn) readErrors(marker string) error {
	var perr *psqlError
	var other []string
	for line := range c.stderr {
		if line == marker {
			break
		}
		if m := psqlErrorLine.FindStringSubmatch(line); m != nil && perr == nil {
			perr = &psqlError{code: m[1], text: line}
			continue
		}
		if m := psqlConstraintLine.FindStringSubmatch(line); m != nil && perr != nil {
			perr.constraint = m[1]
			continue
		}
		if strings.HasPrefix(line, "psql:") || strings.Contains(line, "invalid command") {
			other = append(other, line)
		}
	}
	if perr != nil {
		return perr
	}
	if len(other) > 0 {
		return errors.New(strings.Join(other, "\n"))
	}
	return nil
}

// drainErrors returns what is left on stderr once psql has gone.
func (c *psqlConn) drainErrors() string {
	var lines []string
	for line := range c.stderr {
		lines = append(lines, line)
	}
	return strings.Join(lines, "\n")
}

// psqlRows parses unaligned output with the driver's separators.
func psqlRows(out string) [][]value {
	if out == "" {
		return nil
	}
	var rows [][]value
	for rec := range strings.SplitSeq(strings.TrimSuffix(out, "\n"), psqlRecordSep) {
		var row []value
		for f := range strings.SplitSeq(rec, psqlFieldSep) {
			if f == psqlNull {
				row = append(row, value{kind: kindNull})
			} else {
				row = append(row, value{kind: kindText, text: f})
			}
		}
		rows = append(rows, row)
	}
	return rows
}

// bindParams puts the parameters into psql variables and the SQL refers to them the
// way psql users interpolate values (:'name'); NULL is written as NULL.
func bindParams(sql string, params []value) (sets, bound string) {
	var b strings.Builder
	for i := len(params); i >= 1; i-- {
		p := params[i-1]
		ref := "NULL"
		if p.kind != kindNull {
			name := "p" + strconv.Itoa(i)
			text := p.text
			if p.kind == kindInstant {
				text = p.instant.UTC().Format(time.RFC3339Nano)
			}
			fmt.Fprintf(&b, "\\set %s '%s'\n", name, psqlMetaQuote(text))
			ref = ":'" + name + "'"
		}
		sql = strings.ReplaceAll(sql, "$"+strconv.Itoa(i), ref)
	}
	return b.String(), sql
}

// psqlMetaQuote escapes text for a single-quoted psql meta-command argument.
func psqlMetaQuote(s string) string {
	r := strings.NewReplacer(`\`, `\\`, `'`, `''`, "\n", `\n`, "\t", `\t`, "\r", `\r`)
	return r.Replace(s)
}

func terminate(sql string) string {
	sql = strings.TrimSpace(sql)
	if !strings.HasSuffix(sql, ";") {
		sql += ";"
	}
	return sql
}

func (c *psqlConn) query(ctx context.Context, sql string, params []value) ([][]value, error) {
	sets, sql := bindParams(sql, params)
	out, err := c.run(ctx, sets+terminate(sql))
	return psqlRows(out), err
}

func (c *psqlConn) exec(ctx context.Context, sql string) error {
	_, err := c.run(ctx, terminate(sql))
	return err
}

func (c *psqlConn) begin(ctx context.Context, isolation string) error {
	if isolation != "" {
		return c.exec(ctx, "BEGIN ISOLATION LEVEL "+strings.ToUpper(isolation))
	}
	return c.exec(ctx, "BEGIN")
}

func (c *psqlConn) commit(ctx context.Context) error   { return c.exec(ctx, "COMMIT") }
func (c *psqlConn) rollback(ctx context.Context) error { return c.exec(ctx, "ROLLBACK") }

func (c *psqlConn) prepare(ctx context.Context, name, sql string) error {
	return c.exec(ctx, "PREPARE "+name+" AS "+sql)
}

func (c *psqlConn) execute(ctx context.Context, name string, params []value) ([][]value, error) {
	refs := make([]string, len(params))
	for i := range params {
		refs[i] = "$" + strconv.Itoa(i+1)
	}
	sql := "EXECUTE " + name
	if len(refs) > 0 {
		sql += "(" + strings.Join(refs, ", ") + ")"
	}
	return c.query(ctx, sql, params)
}

// copyIn sends COPY … FROM STDIN with its data inline in the script, ended by \.
func (c *psqlConn) copyIn(ctx context.Context, table string, columns []string, data [][]value) error {
	var b strings.Builder
	fmt.Fprintf(&b, "COPY %s (%s) FROM STDIN;\n", table, strings.Join(columns, ", "))
	for _, r := range data {
		for i, v := range r {
			if i > 0 {
				b.WriteByte('\t')
			}
			if v.kind == kindNull {
				b.WriteString(`\N`)
			} else {
				b.WriteString(v.text)
			}
		}
		b.WriteByte('\n')
	}
	b.WriteString("\\.\n")
	_, err := c.run(ctx, b.String())
	return err
}

func (c *psqlConn) copyOut(ctx context.Context, sql string) ([][]value, error) {
	out, err := c.run(ctx, terminate(sql))
	if err != nil {
		return nil, err
	}
	return parseCopyText(out), nil
}

// batch sends the statements as one query string: psql's \; joins them.
func (c *psqlConn) batch(ctx context.Context, statements []string) error {
	return c.exec(ctx, strings.Join(statements, ` \; `))
}

// cancel is Ctrl-C: SIGINT makes psql send a CancelRequest and report the statement's
// error. A script stops there (psql exits with status 3), so the next step starts a
// new psql.
func (c *psqlConn) cancel(ctx context.Context, sql string, after time.Duration) error {
	if c.cmd == nil {
		if err := c.start(ctx); err != nil {
			return err
		}
	}
	// The delay starts once psql has read the line before the query, so a slow start
	// never turns Ctrl-C into "stop the script before the query".
	c.n++
	started := fmt.Sprintf("@@pgtestproxy-step-%d@@", c.n)
	if _, err := io.WriteString(c.stdin, `\echo `+started+"\n"+terminate(sql)+"\n"); err != nil {
		return err
	}
	for {
		line, err := c.stdout.ReadString('\n')
		if err != nil {
			return fmt.Errorf("psql exited: %w; stderr: %s", err, c.drainErrors())
		}
		if line == started+"\n" {
			break
		}
	}
	time.Sleep(after)
	if err := c.cmd.Process.Signal(syscall.SIGINT); err != nil {
		return err
	}
	var perr *psqlError
	var lines []string
	timeout := time.After(20 * time.Second)
	for {
		select {
		case line, ok := <-c.stderr:
			if !ok {
				c.reap()
				if perr == nil {
					return fmt.Errorf("psql reported no error after Ctrl-C: %s", strings.Join(lines, "\n"))
				}
				return perr
			}
			lines = append(lines, line)
			if m := psqlErrorLine.FindStringSubmatch(line); m != nil && perr == nil {
				perr = &psqlError{code: m[1], text: line}
			}
		case <-timeout:
			c.kill()
			return fmt.Errorf("psql did not stop after Ctrl-C: %s", strings.Join(lines, "\n"))
		case <-ctx.Done():
			c.kill()
			return ctx.Err()
		}
	}
}

func (c *psqlConn) parallel(ctx context.Context, n int, sql string) ([][][]value, error) {
	return inTurn(ctx, c, n, sql)
}

// reconnect is \connect with no arguments: the same parameters, a new connection.
func (c *psqlConn) reconnect(ctx context.Context) error {
	_, err := c.run(ctx, `\connect`)
	return err
}

func (c *psqlConn) close() error {
	if c.cmd == nil {
		return nil
	}
	_ = c.stdin.Close()
	select {
	case <-c.exited:
		c.reap()
	case <-time.After(10 * time.Second):
		c.kill()
	}
	return nil
}

func (c *psqlConn) kill() {
	if c.cmd != nil && c.cmd.Process != nil {
		_ = c.cmd.Process.Kill()
	}
	c.reap()
}

// reap waits for psql to be gone and lets go of it.
func (c *psqlConn) reap() {
	if c.cmd == nil {
		return
	}
	<-c.exited
	_ = c.out.Close()
	c.cmd = nil
}

func (c *psqlConn) errorInfo(err error) (string, string, bool) {
	var perr *psqlError
	if errors.As(err, &perr) {
		return perr.code, perr.constraint, true
	}
	return "", "", false
}
