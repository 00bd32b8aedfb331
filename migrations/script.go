package migrations

import (
	"context"
	"fmt"
	"regexp"
	"strconv"
	"strings"

	"github.com/jackc/pgerrcode"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgtestproxy/pgtestproxy/internal/progress"
	"github.com/pgtestproxy/pgtestproxy/internal/sqllex"
)

// harmlessMeta are the psql backslash commands a script may hold that change nothing
// in the database: pg_dump's \restrict / \unrestrict guard, output and variables.
var harmlessMeta = map[string]bool{
	`\restrict`: true, `\unrestrict`: true, `\echo`: true, `\qecho`: true, `\set`: true, `\unset`: true,
}

// apply runs snap's up parts on the database at connString, one file after another on
// one connection, each file in a transaction unless it asks otherwise or holds a
// statement that cannot run in one.
func (d *Dir) apply(ctx context.Context, connString string, snap *snapshot) error {
	conn, err := pgconn.Connect(ctx, connString)
	if err != nil {
		return fmt.Errorf("migrate %s: %w", d.display, err)
	}
	defer func() {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cancelGrace)
		defer cancel()
		conn.Close(cctx)
	}()
	for i, f := range snap.files {
		progress.Report(ctx, progress.Step{N: i + 1, Total: len(snap.files), Name: f.name})
		if err := d.applyFile(ctx, conn, f); err != nil {
			return err
		}
	}
	return nil
}

func (d *Dir) applyFile(ctx context.Context, conn *pgconn.PgConn, f file) error {
	tx := !f.up.noTx && len(f.up.cmds) > 1
	for _, c := range f.up.cmds {
		if c.Kind == sqllex.SQLCommand && controlsTransaction(c.Text) {
			tx = false
		}
	}
	if tx {
		if err := conn.Exec(ctx, "BEGIN").Close(); err != nil {
			return d.commandError(ctx, f, f.up.cmds[0], err)
		}
	}
	cmds := f.up.cmds
	for len(cmds) > 0 {
		n := 1
		if tx { // in a transaction, a run of plain statements goes as one pipeline
			for n < len(cmds) && plain(cmds[n]) && plain(cmds[0]) {
				n++
			}
		}
		var err error
		if n > 1 {
			err = d.pipeline(ctx, conn, f, cmds[:n])
		} else {
			err = d.run(ctx, conn, f, cmds[0])
		}
		if err != nil {
			return err
		}
		cmds = cmds[n:]
	}
	if tx {
		if err := conn.Exec(ctx, "COMMIT").Close(); err != nil {
			return d.commandError(ctx, f, f.up.cmds[len(f.up.cmds)-1], err)
		}
	}
	return nil
}

// plain reports a statement that may go in a pipeline: one statement, no COPY.
func plain(c command) bool { return c.Kind == sqllex.SQLCommand && !c.Copy && !c.block }

// pipeline runs plain statements in one round trip (extended protocol, one Sync) and
// names the one that failed.
func (d *Dir) pipeline(ctx context.Context, conn *pgconn.PgConn, f file, cmds []command) error {
	batch := &pgconn.Batch{}
	for _, c := range cmds {
		batch.ExecParams(c.Text, nil, nil, nil, nil)
	}
	mrr := conn.ExecBatch(ctx, batch)
	i := 0
	for ; mrr.NextResult(); i++ {
		if _, err := mrr.ResultReader().Close(); err != nil {
			mrr.Close()
			return d.commandError(ctx, f, cmds[i], err)
		}
	}
	if err := mrr.Close(); err != nil {
		return d.commandError(ctx, f, cmds[min(i, len(cmds)-1)], err)
	}
	return nil
}

// run runs one command of f: a statement, a COPY with its inline data, or a psql
// backslash command (skipped when harmless, refused otherwise).
func (d *Dir) run(ctx context.Context, conn *pgconn.PgConn, f file, c command) error {
	var err error
	switch {
	case c.Kind == sqllex.MetaCommand:
		name, _, _ := strings.Cut(c.Text, " ")
		if harmlessMeta[name] {
			return nil
		}
		return &Error{Dir: d.errDir(), File: d.errFile(f), Line: c.Line,
			Message: fmt.Sprintf("psql meta-command %s is not supported (only \\restrict, \\unrestrict, \\echo, \\qecho, \\set and \\unset are skipped)", name)}
	case c.Copy:
		_, err = conn.CopyFrom(ctx, strings.NewReader(c.CopyData), c.Text)
	default:
		_, err = conn.Exec(ctx, c.Text).ReadAll()
	}
	if err != nil {
		return d.commandError(ctx, f, c, err)
	}
	return nil
}

var copyLineRE = regexp.MustCompile(`^COPY [^,]*, line ([0-9]+)`)

// commandError names the file and line of a failing command: the line of the error
// position inside the statement, or of the bad data row of a COPY.
func (d *Dir) commandError(ctx context.Context, f file, c command, err error) error {
	e := &Error{Dir: d.errDir(), File: d.errFile(f), Line: c.Line}
	if ctx.Err() != nil {
		e.Code, e.Message, e.Err = pgerrcode.QueryCanceled, "canceled: "+ctx.Err().Error(), ctx.Err()
		return e
	}
	pgErr := e.fromServer(err)
	switch {
	case pgErr == nil:
	case pgErr.Position > 0:
		e.Line = c.Line + lineAt([]byte(c.Text), int(pgErr.Position)) - 1
	case c.Copy:
		if m := copyLineRE.FindStringSubmatch(pgErr.Where); m != nil {
			if n, err := strconv.Atoi(m[1]); err == nil {
				e.Line = c.CopyLine + n - 1
			}
		}
	}
	return e
}

// errDir and errFile split what an *Error names: a directory and a file in it, or a
// lone script file.
func (d *Dir) errDir() string {
	if d.only != "" {
		return ""
	}
	return d.display
}

func (d *Dir) errFile(f file) string {
	if d.only != "" {
		return d.display
	}
	return f.name
}
