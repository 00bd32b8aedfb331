package wire

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgerrcode"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/pgtestproxy/pgtestproxy/internal/pgerr"
)

// target reaches a database through a fixed config.
type target struct{ cfg *pgconn.Config }

func (t target) ConnConfig() *pgconn.Config { return t.cfg.Copy() }
func (t target) Database() string           { return t.cfg.Database }

// A server that answers the start-up with 57P03 (shutting down, starting up: what a
// restarting upstream says) is an unreachable upstream to the client: 08006 naming the
// address and carrying the server's words, as when nothing listens (found by the
// stress suite's upstream restart under load). A scripted backend, since a real server
// says it only for a moment.
func TestConnectUpstreamCannotConnectNow(t *testing.T) {
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
					Code: pgerrcode.CannotConnectNow, Message: "the database system is shutting down"})
				_ = be.Flush()
			}
			_ = c.Close()
		}
	}()
	cfg, err := pgconn.ParseConfig("postgres://u@" + l.Addr().String() + "/clone?sslmode=disable")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err = ConnectUpstream(ctx, target{cfg}, nil)
	code, msg, _, _ := pgerr.Fields(err)
	if code != pgerrcode.ConnectionFailure || !strings.Contains(msg, l.Addr().String()) ||
		!strings.Contains(msg, "the database system is shutting down") {
		t.Fatalf("got %s %q, want 08006 naming %s and the server's message", code, msg, l.Addr())
	}
}
