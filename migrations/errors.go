package migrations

import (
	"context"
	"errors"
	"fmt"
	"path"
	"strings"
	"unicode/utf8"

	"github.com/golang-migrate/migrate/v4/database"
	"github.com/jackc/pgerrcode"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgtestproxy/pgtestproxy/internal/sqllex"
)

// Error is a migration that failed: which file, where in it, and what the upstream said.
type Error struct {
	Dir     string // the migrations directory as given to Open/OpenFS
	File    string // the migration file, relative to Dir
	Line    int    // 1-based line in File of the failing statement; 0 when unknown
	Code    string // the upstream's SQLSTATE; "" when the failure did not come from the server
	Message string // the upstream's message (or what went wrong)
	Detail  string // the upstream's DETAIL, if any
	Hint    string // the upstream's HINT, if any
	Err     error  // the underlying error

	data []byte // the file's contents, to locate the statement by replay
}

// SQLState returns the upstream's SQLSTATE, or XX000 (internal_error) when it gave none.
func (e *Error) SQLState() string {
	if e.Code == "" {
		return pgerrcode.InternalError
	}
	return e.Code
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString("migration ")
	b.WriteString(path.Join(e.Dir, e.File))
	if e.Line > 0 {
		fmt.Fprintf(&b, " line %d", e.Line)
	}
	b.WriteString(": ")
	b.WriteString(e.Message)
	if e.Code != "" {
		fmt.Fprintf(&b, " (SQLSTATE %s)", e.Code)
	}
	if e.Detail != "" {
		b.WriteString("; detail: " + e.Detail)
	}
	if e.Hint != "" {
		b.WriteString("; hint: " + e.Hint)
	}
	return b.String()
}

func (e *Error) Unwrap() error { return e.Err }

// newError turns what golang-migrate's driver returned for f into an *Error, with the
// line of the error position when the server reported one.
func newError(f file, err error) *Error {
	e := &Error{File: f.name, Message: err.Error(), Err: err, data: f.data}
	cause := err
	var dbErr database.Error // golang-migrate's wrapper has no Unwrap
	if errors.As(err, &dbErr) && dbErr.OrigErr != nil {
		cause = dbErr.OrigErr
	}
	if pgErr := e.fromServer(cause); pgErr != nil && pgErr.Position > 0 {
		e.Line = lineAt(f.data, int(pgErr.Position))
	}
	return e
}

// fromServer fills e from the server's error inside err, and returns that error (nil
// when err did not come from the server).
func (e *Error) fromServer(err error) *pgconn.PgError {
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) {
		e.Err, e.Message = err, err.Error()
		return nil
	}
	e.Code, e.Message, e.Detail, e.Hint, e.Err = pgErr.Code, pgErr.Message, pgErr.Detail, pgErr.Hint, pgErr
	return pgErr
}

// lineAt returns the 1-based line of the pos'th character (1-based, counted in
// characters as PostgreSQL reports it) of data.
func lineAt(data []byte, pos int) int {
	line := 1
	for i := 0; i < len(data) && pos > 1; pos-- {
		r, size := utf8.DecodeRune(data[i:])
		if r == '\n' {
			line++
		}
		i += size
	}
	return line
}

// replay finds the statement of e's file that fails when the server reported no error
// position: it runs the file's statements one at a time in a transaction it rolls back
// and returns the line of the first one failing with e's SQLSTATE. It returns 0 when it
// cannot tell (transaction control in the file, a different failure, no failure).
func replay(ctx context.Context, cfg *pgx.ConnConfig, e *Error) int {
	stmts := sqllex.Script(string(e.data))
	switch {
	case len(stmts) == 0 || e.Code == "":
		return 0
	case len(stmts) == 1:
		return stmts[0].Line
	}
	for _, s := range stmts {
		if s.Kind != sqllex.SQLCommand || s.Copy || controlsTransaction(s.Text) {
			return 0
		}
	}
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return 0
	}
	defer conn.Close(context.WithoutCancel(ctx))
	tx, err := conn.Begin(ctx)
	if err != nil {
		return 0
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	for _, s := range stmts {
		if _, err := tx.Exec(ctx, s.Text); err != nil {
			var pgErr *pgconn.PgError
			if errors.As(err, &pgErr) && pgErr.Code == e.Code {
				return s.Line
			}
			return 0
		}
	}
	return 0
}

// controlsTransaction reports whether a statement begins, ends or cannot run inside a
// transaction block, which would make a replay inside one misleading.
func controlsTransaction(stmt string) bool {
	switch sqllex.Classify(stmt).Kind {
	case sqllex.Other, sqllex.Empty, sqllex.Listen, sqllex.Unlisten, sqllex.Notify:
		return false
	}
	return true
}
