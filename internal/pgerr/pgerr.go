// Package pgerr is pgtestproxy's one SQLSTATE vocabulary. Codes are the constants of
// github.com/jackc/pgerrcode; failures the program reports in PostgreSQL's terms are an
// *Error, or any error with a SQLState method (the upstream's *pgconn.PgError, a
// migration's typed error); SQLState finds the code of any of them through a chain of
// wrapped errors with errors.As. Every package that reports a SQLSTATE uses this
// package: none spells out a code as a string literal or its own predicate.
package pgerr

import (
	"errors"

	"github.com/jackc/pgerrcode"
	"github.com/jackc/pgx/v5/pgconn"
)

// Error is a failure reported to a client as an ErrorResponse with SQLSTATE Code.
type Error struct {
	Code    string // SQLSTATE, a pgerrcode constant
	Message string // what failed, naming the objects involved
	Detail  string // PostgreSQL's DETAIL, if any
	Hint    string // PostgreSQL's HINT, if any
	Err     error  // the cause, if any; its text follows Message in Error()
}

// New returns an *Error with code and message.
func New(code, message string) *Error { return &Error{Code: code, Message: message} }

// Wrap returns an *Error with code and message whose cause is err.
func Wrap(code, message string, err error) *Error {
	return &Error{Code: code, Message: message, Err: err}
}

func (e *Error) Error() string {
	if e.Err != nil {
		return e.Message + ": " + e.Err.Error()
	}
	return e.Message
}

// SQLState returns the error's SQLSTATE.
func (e *Error) SQLState() string { return e.Code }

func (e *Error) Unwrap() error { return e.Err }

// Coded is an error that carries a SQLSTATE: *Error, *pgconn.PgError, and typed
// errors of other packages (migrations.Error).
type Coded interface {
	error
	SQLState() string
}

var (
	_ Coded = (*Error)(nil)
	_ Coded = (*pgconn.PgError)(nil)
)

// SQLState returns the SQLSTATE of the first error in err's chain that carries one,
// or "" when none does.
func SQLState(err error) string {
	var c Coded
	if errors.As(err, &c) {
		return c.SQLState()
	}
	return ""
}

// Fields returns what an ErrorResponse for err carries: its SQLSTATE (XX000,
// internal_error, when nothing in the chain carries one), message, detail and hint.
// A server's error keeps the server's own message, detail and hint even when wrapped;
// for other coded errors the message is the whole error text.
func Fields(err error) (code, message, detail, hint string) {
	var own *Error
	var pg *pgconn.PgError
	var c Coded
	switch {
	case errors.As(err, &own) && own.Err == nil:
		code, message, detail, hint = own.Code, own.Message, own.Detail, own.Hint
	case errors.As(err, &own):
		code, message, detail, hint = own.Code, own.Error(), own.Detail, own.Hint
	case errors.As(err, &pg):
		code, message, detail, hint = pg.Code, pg.Message, pg.Detail, pg.Hint
	case errors.As(err, &c):
		code, message = c.SQLState(), err.Error()
	default:
		code, message = pgerrcode.InternalError, err.Error()
	}
	if code == "" {
		code = pgerrcode.InternalError
	}
	return code, message, detail, hint
}
