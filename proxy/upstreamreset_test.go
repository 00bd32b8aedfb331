package proxy

import (
	"net"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
)

// A db-mode session whose upstream connection breaks with a reset (a backend that
// died under a restart: Linux discards its unread FATAL when a reset follows) ends
// with FATAL 08006 for the client, not a dropped socket (found by the stress suite's
// upstream restart under load: a client got io.ErrUnexpectedEOF). A scripted backend
// completes the start-up, then resets the connection when the query arrives.
func TestDBUpstreamResetIsAnError(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go resettingBackend(c)
		}
	}()
	p := newTestProvider(t)
	p.connConfig = func(db string) *pgconn.Config {
		cfg, _ := pgconn.ParseConfig("postgres://u@" + ln.Addr().String() + "/" + db + "?sslmode=disable&connect_timeout=5")
		return cfg
	}
	s := startProxy(t, Config{Provider: p, Logger: nopLogger()})
	c := connect(t, proxyURL(s, "app"))
	_, err = c.Exec(testContext(t), "SELECT 1")
	wantSQLState(t, err, "08006")
}

// resettingBackend answers a start-up as a trust-auth server does, then resets the
// connection (SO_LINGER 0) as soon as the client sends anything more.
func resettingBackend(c net.Conn) {
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(30 * time.Second))
	be := pgproto3.NewBackend(c, c)
	if _, err := be.ReceiveStartupMessage(); err != nil {
		return
	}
	be.Send(&pgproto3.AuthenticationOk{})
	be.Send(&pgproto3.ParameterStatus{Name: "server_version", Value: "15.0"})
	be.Send(&pgproto3.BackendKeyData{ProcessID: 4242, SecretKey: []byte{1, 2, 3, 4}})
	be.Send(&pgproto3.ReadyForQuery{TxStatus: 'I'})
	if err := be.Flush(); err != nil {
		return
	}
	if _, err := be.Receive(); err != nil {
		return
	}
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
}
