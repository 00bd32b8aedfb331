package wire

import (
	"github.com/jackc/pgerrcode"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/pgtestproxy/pgtestproxy/internal/pgerr"
)

// ErrShuttingDown refuses a client, or ends its session, while the proxy shuts down.
var ErrShuttingDown = pgerr.New(pgerrcode.AdminShutdown, "pgtestproxy is shutting down")

// ErrorResponse turns err into the ErrorResponse a client should see, with the given
// severity ("FATAL" during startup, "ERROR" on the admin console). A server's error,
// wrapped or not, reaches the client as the server said it, detail and hint included.
func ErrorResponse(severity string, err error) *pgproto3.ErrorResponse {
	r := &pgproto3.ErrorResponse{Severity: severity, SeverityUnlocalized: severity}
	r.Code, r.Message, r.Detail, r.Hint = pgerr.Fields(err)
	return r
}

// ShutdownResponse is the FATAL error that tells a client, between two messages, that
// the proxy ends its session because it shuts down.
func ShutdownResponse() *pgproto3.ErrorResponse {
	return &pgproto3.ErrorResponse{Severity: "FATAL", SeverityUnlocalized: "FATAL",
		Code: pgerrcode.AdminShutdown, Message: "terminating connection because pgtestproxy is shutting down"}
}
