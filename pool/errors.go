package pool

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"

	"github.com/jackc/pgx/v5/pgconn"
)

// Error is a failure the proxy reports to its client as an ErrorResponse with SQLSTATE
// Code.
type Error struct {
	Code string // SQLSTATE
	Msg  string // what failed, naming the objects involved
	Err  error  // the cause, if any
}

func (e *Error) Error() string {
	if e.Err != nil {
		return e.Msg + ": " + e.Err.Error()
	}
	return e.Msg
}

// SQLState returns the SQLSTATE the failure maps to.
func (e *Error) SQLState() string { return e.Code }

func (e *Error) Unwrap() error { return e.Err }

// ErrClosed is returned by Acquire once Close has begun (SQLSTATE 57P01,
// admin_shutdown).
var ErrClosed error = &Error{Code: "57P01", Msg: "pool is shutting down"}

// errAtCap is returned internally when MaxClones clones already exist.
var errAtCap = errors.New("clone cap reached")

// address names the upstream as host:port (or socket path) for messages.
func address(cfg *pgconn.Config) string {
	if len(cfg.Host) > 0 && cfg.Host[0] == '/' {
		return fmt.Sprintf("%s/.s.PGSQL.%d", cfg.Host, cfg.Port)
	}
	return net.JoinHostPort(cfg.Host, strconv.Itoa(int(cfg.Port)))
}

// upstreamErr maps an error talking to the upstream: one that never reached a server
// (refused, reset, timed out dialing) becomes SQLSTATE 08006 naming the address; a
// server's own error and context errors pass through.
func (p *Pool) upstreamErr(what string, err error) error {
	if err == nil {
		return nil
	}
	var pgErr *pgconn.PgError
	var perr *Error
	if errors.As(err, &pgErr) || errors.As(err, &perr) ||
		errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("%s: %w", what, err)
	}
	return &Error{Code: "08006", Msg: fmt.Sprintf("%s: upstream %s unreachable", what, p.addr), Err: innermost(err)}
}

// innermost strips pgconn's ConnectError, whose message repeats the user and database,
// down to the network error.
func innermost(err error) error {
	var ce *pgconn.ConnectError
	if errors.As(err, &ce) {
		if inner := ce.Unwrap(); inner != nil {
			return inner
		}
	}
	return err
}

// sqlState returns err's SQLSTATE when the server sent one.
func sqlState(err error) string {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return pgErr.Code
	}
	return ""
}
