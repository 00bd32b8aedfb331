package pool

import (
	"context"
	"errors"
	"fmt"
	"github.com/jackc/pgerrcode"
	"github.com/pgtestproxy/pgtestproxy/internal/pgerr"
	"net"
	"strconv"

	"github.com/jackc/pgx/v5/pgconn"
)

// ErrClosed is returned by Acquire once Close has begun (SQLSTATE 57P01,
// admin_shutdown).
var ErrClosed error = pgerr.New(pgerrcode.AdminShutdown, "pool is shutting down")

// errLockHeld means the owner lock is held by a session of this pool the server has not
// yet seen go.
var errLockHeld = errors.New("owner lock still held by a previous session")

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
// (refused, reset, timed out dialing), or a server's answer that it cannot take
// connections now (57P03: shutting down, starting up), becomes SQLSTATE 08006 naming
// the address; other server errors and context errors pass through.
func (p *Pool) upstreamErr(what string, err error) error {
	if err == nil {
		return nil
	}
	code := pgerr.SQLState(err)
	if code == pgerrcode.CannotConnectNow {
		return pgerr.Wrap(pgerrcode.ConnectionFailure, fmt.Sprintf("%s: upstream %s unreachable", what, p.addr), innermost(err))
	}
	if code != "" ||
		errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("%s: %w", what, err)
	}
	return pgerr.Wrap(pgerrcode.ConnectionFailure, fmt.Sprintf("%s: upstream %s unreachable", what, p.addr), innermost(err))
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
