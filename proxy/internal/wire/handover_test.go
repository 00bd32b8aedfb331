package wire

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
)

// slowWriter's writes reach the socket at once but return late, as the write of a
// goroutine the scheduler left waiting does on a loaded machine.
type slowWriter struct {
	net.Conn
	delay time.Duration
}

func (w slowWriter) Write(p []byte) (int, error) {
	n, err := w.Conn.Write(p)
	time.Sleep(w.delay)
	return n, err
}

// TestConnectUpstreamKeepsFirstReply: when a write of pgconn's start-up takes longer
// than 15 ms, pgconn starts a background reader; if the server's answer arrives before
// the write returns, that reader takes it and reads again, and is still blocked in a
// Read of the socket when the proxy takes the connection over. The first reply the
// server sends after that went to it and was lost: the client waited forever for the
// answer to its first query while the backend sat idle (seen in db mode under load,
// and as tx-mode lease starts that never finished). A scripted server, so the answer
// is there before the write returns.
func TestConnectUpstreamKeepsFirstReply(t *testing.T) {
	addr := serveOneQuery(t)
	cfg, err := pgconn.ParseConfig("postgres://u@" + addr + "/clone?sslmode=disable")
	if err != nil {
		t.Fatal(err)
	}
	cfg.DialFunc = func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		return slowWriter{Conn: c, delay: 60 * time.Millisecond}, nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	up, err := ConnectUpstream(ctx, target{cfg}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer up.Conn.Close()
	q, _ := (&pgproto3.Query{String: "SELECT 1"}).Encode(nil)
	if _, err := up.Conn.Write(q); err != nil {
		t.Fatal(err)
	}
	_ = up.Conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	fe := pgproto3.NewFrontend(up.Conn, up.Conn)
	msg, err := fe.Receive()
	if err != nil {
		t.Fatalf("the server's reply to the first query never reached the proxy: %v", err)
	}
	if _, ok := msg.(*pgproto3.CommandComplete); !ok {
		t.Fatalf("first reply %T, want CommandComplete", msg)
	}
}

// serveOneQuery is a scripted server for one connection: trust start-up, then one
// Query answered with CommandComplete and ReadyForQuery. It returns its address.
func serveOneQuery(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		c, err := l.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(20 * time.Second))
		be := pgproto3.NewBackend(c, c)
		if _, err := be.ReceiveStartupMessage(); err != nil {
			return
		}
		be.Send(&pgproto3.AuthenticationOk{})
		be.Send(&pgproto3.BackendKeyData{ProcessID: 42, SecretKey: []byte{0, 0, 0, 7}})
		be.Send(&pgproto3.ReadyForQuery{TxStatus: 'I'})
		if be.Flush() != nil {
			return
		}
		if msg, err := be.Receive(); err != nil {
			return
		} else if _, ok := msg.(*pgproto3.Query); !ok {
			return
		}
		be.Send(&pgproto3.CommandComplete{CommandTag: []byte("SELECT 1")})
		be.Send(&pgproto3.ReadyForQuery{TxStatus: 'I'})
		_ = be.Flush()
		_, _ = be.Receive() // until the client closes
	}()
	return l.Addr().String()
}

// TestConnectUpstreamBareSocket: with no stale read to hand on, the proxy reads the
// bare socket, not the handover wrapper (whose lock would be on every relayed read).
func TestConnectUpstreamBareSocket(t *testing.T) {
	cfg, err := pgconn.ParseConfig("postgres://u@" + serveOneQuery(t) + "/clone?sslmode=disable")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	up, err := ConnectUpstream(ctx, target{cfg}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer up.Conn.Close()
	if _, wrapped := up.Conn.(*OnceConn).Conn.(*handoverConn); wrapped {
		t.Fatal("the upstream connection is still the handover wrapper")
	}
}
