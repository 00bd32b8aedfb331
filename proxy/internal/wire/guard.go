package wire

import (
	"net"
	"time"

	"github.com/jackc/pgerrcode"
	"github.com/jackc/pgx/v5/pgproto3"
	"go.uber.org/zap"
)

// internalErrorMessage is what a client whose session a panic ended is told.
const internalErrorMessage = "internal error in pgtestproxy"

// Guard contains the panics of the goroutines that touch a client's bytes (sessions,
// relay directions, tx-mode pumps, cancel watchers, the console): each recovers,
// ends only the session (or shared lease) it belongs to, and reports here.
type Guard struct {
	Log   *zap.Logger
	Stats *Counters
	// Hook, set only by tests, is called with the goroutine kind's name at the point
	// where a test may inject a panic, and at a few named points where a test may hold
	// the goroutine ("tx client idle", "tx attach departing").
	Hook func(where string)
}

// At is a goroutine kind's injection point: it calls the test hook, if any.
func (g *Guard) At(where string) {
	if g.Hook != nil {
		g.Hook(where)
	}
}

// Recovered records the panic r recovered in a goroutine of kind where: it is
// counted and logged once, with its stack.
func (g *Guard) Recovered(where string, r any) {
	g.Stats.Panics.Add(1)
	g.Log.Error("panic recovered: its session ends, the proxy serves on", zap.String("goroutine", where),
		zap.Any("panic", r), zap.Stack("stack"))
}

// InternalErrorResponse is the FATAL error a client gets when a panic ended its session.
func InternalErrorResponse() *pgproto3.ErrorResponse {
	return &pgproto3.ErrorResponse{Severity: "FATAL", SeverityUnlocalized: "FATAL",
		Code: pgerrcode.InternalError, Message: internalErrorMessage}
}

// SayInternalError tells the client on c, whose stream is between two messages, that
// a panic ended its session. It reports whether the message went out.
func SayInternalError(c net.Conn) bool {
	var out MsgBuffer
	out.Add(InternalErrorResponse())
	_ = c.SetWriteDeadline(time.Now().Add(GoodbyeWriteTimeout))
	return out.Flush(c) == nil
}
