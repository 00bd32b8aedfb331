package proxy

import (
	"errors"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
)

// SQLSTATEs the proxy itself sends (SPEC §8).
const (
	codeProtocolViolation   = "08P01"
	codeConnectionFailure   = "08006"
	codeInvalidParameter    = "22023"
	codeTooManyConnections  = "53300"
	codeAdminShutdown       = "57P01"
	codeInternal            = "XX000"
	codeInvalidPassword     = "28P01"
	codeFeatureNotSupported = "0A000"
	codeSyntaxError         = "42601"
	codeUndefinedObject     = "42704"
)

// pgError is an error the proxy reports to a client in PostgreSQL's terms.
type pgError struct {
	code    string
	message string
	detail  string
	hint    string
}

func (e *pgError) Error() string    { return e.message }
func (e *pgError) SQLState() string { return e.code }

func newPgError(code, message string) *pgError { return &pgError{code: code, message: message} }

// errorResponse turns err into the ErrorResponse a client should see, with the given
// severity ("FATAL" during startup, "ERROR" on the admin console).
func errorResponse(severity string, err error) *pgproto3.ErrorResponse {
	r := &pgproto3.ErrorResponse{Severity: severity, SeverityUnlocalized: severity}
	var own *pgError
	var coded interface{ SQLState() string }
	pg, isPg := err.(*pgconn.PgError)
	switch {
	case errors.As(err, &own):
		r.Code, r.Message, r.Detail, r.Hint = own.code, own.message, own.detail, own.hint
	case isPg:
		// An upstream error: pass it on as the server said it.
		r.Code, r.Message, r.Detail, r.Hint = pg.Code, pg.Message, pg.Detail, pg.Hint
	case errors.As(err, &coded):
		r.Code, r.Message = coded.SQLState(), err.Error()
	default:
		r.Code, r.Message = codeInternal, err.Error()
	}
	if r.Code == "" {
		r.Code = codeInternal
	}
	return r
}

// quietError is a failure that cannot be reported to the client, because the
// channel to it is what broke (a failed TLS handshake).
type quietError struct{ err error }

func (e *quietError) Error() string { return e.err.Error() }
func (e *quietError) Unwrap() error { return e.err }
