package pool

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/jackc/pgerrcode"
	"github.com/jackc/pgx/v5/pgproto3"
	"go.uber.org/zap"
)

// An upstream that answers 57P03 (shutting down, starting up: what a restarting
// server says for a moment) is unreachable to the pool's callers: 08006 naming the
// address, as when nothing listens, so a client of the proxy gets one code for "the
// upstream is down" (found by the stress suite's upstream restart under load). A
// scripted server, since a real one says it only for a moment.
func TestUpstreamCannotConnectNow(t *testing.T) {
	t.Parallel()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			_ = c.SetDeadline(time.Now().Add(10 * time.Second))
			be := pgproto3.NewBackend(c, c)
			if _, err := be.ReceiveStartupMessage(); err == nil {
				be.Send(&pgproto3.ErrorResponse{Severity: "FATAL", SeverityUnlocalized: "FATAL",
					Code: pgerrcode.CannotConnectNow, Message: "the database system is starting up"})
				_ = be.Flush()
			}
			_ = c.Close()
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	p, err := New(ctx, Config{ConnString: "postgres://u@" + l.Addr().String() + "/postgres?sslmode=disable",
		Templates: map[string]Migrator{"": newMigDir(t, simpleSchema)}, Logger: zap.NewNop()})
	if err == nil {
		p.Close()
		t.Fatal("New succeeded against a server that takes no connections")
	}
	if sqlStateOf(err) != pgerrcode.ConnectionFailure {
		t.Fatalf("New: %v (SQLSTATE %q), want 08006", err, sqlStateOf(err))
	}
	mustContain(t, err.Error(), l.Addr().String())
	mustContain(t, err.Error(), "the database system is starting up")
}
