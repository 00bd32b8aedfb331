package txmode

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"syscall"
	"testing"

	"github.com/jackc/pgerrcode"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgtestproxy/pgtestproxy/internal/pgerr"
)

// TestLostBackendIs08006: a lease start whose backend connection broke (seen in the
// upstream-restart stress run as XX000 "begin the lease's transaction: read: connection
// reset by peer") reaches the client as 08006; errors with a SQLSTATE and the client's
// own going keep theirs.
func TestLostBackendIs08006(t *testing.T) {
	reset := fmt.Errorf("begin the lease's transaction: %w",
		&net.OpError{Op: "read", Net: "tcp", Err: syscall.ECONNRESET})
	for _, err := range []error{reset, fmt.Errorf("begin the lease's transaction: %w", io.ErrUnexpectedEOF)} {
		var pe *pgerr.Error
		if got := lostBackend("pgtp_x", err); !errors.As(got, &pe) || pe.Code != pgerrcode.ConnectionFailure {
			t.Errorf("lostBackend(%v) = %v, want 08006", err, got)
		}
	}
	server := &pgconn.PgError{Code: pgerrcode.QueryCanceled}
	own := &pgerr.Error{Code: pgerrcode.ConnectionFailure, Message: "step timed out"}
	for _, err := range []error{nil, server, fmt.Errorf("start: %w", server), own, context.Canceled} {
		if got := lostBackend("pgtp_x", err); got != err {
			t.Errorf("lostBackend(%v) = %v, want it unchanged", err, got)
		}
	}
}
