package wire

import (
	"context"
	"fmt"
	"io"
	"net"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
)

// CancelTimeout bounds forwarding one CancelRequest to the upstream.
const CancelTimeout = 10 * time.Second

// BackendKey is the BackendKeyData the proxy issues to a client (protocol 3.0: a
// 4-byte secret).
type BackendKey struct {
	PID    uint32
	Secret [4]byte
}

// Canceler is what a proxy-issued key cancels: a backend directly (db mode), or a
// tx-mode session, which decides whether its client's statement is the one running.
type Canceler interface {
	Send(ctx context.Context) error
}

// CancelTarget is the real backend behind a proxy-issued key, and how to reach it.
type CancelTarget struct {
	pid     uint32
	secret  []byte
	network string
	address string
	dial    pgconn.DialFunc
}

// NewCancelTarget records how to cancel the backend of an upstream connection made
// with cfg.
func NewCancelTarget(hc *pgconn.HijackedConn, cfg *pgconn.Config) *CancelTarget {
	t := &CancelTarget{pid: hc.PID, secret: append([]byte(nil), hc.SecretKey...), dial: cfg.DialFunc}
	if addr := hc.Conn.RemoteAddr(); addr != nil && addr.Network() != "unix" {
		t.network, t.address = addr.Network(), addr.String()
	} else {
		// A Unix socket's peer name is relative; dial the configured one.
		t.network, t.address = pgconn.NetworkAddress(cfg.Host, cfg.Port)
	}
	if t.dial == nil {
		t.dial = (&net.Dialer{}).DialContext
	}
	return t
}

// PID is the target backend's process ID.
func (t *CancelTarget) PID() uint32 { return t.pid }

// Send delivers a CancelRequest for the target's backend and waits for the server
// to close the connection, as PostgreSQL clients do.
func (t *CancelTarget) Send(ctx context.Context) error {
	conn, err := t.dial(ctx, t.network, t.address)
	if err != nil {
		return fmt.Errorf("dial upstream %s for cancel: %w", t.address, err)
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	buf, err := (&pgproto3.CancelRequest{ProcessID: t.pid, SecretKey: t.secret}).Encode(nil)
	if err != nil {
		return fmt.Errorf("encode cancel request: %w", err)
	}
	if _, err := conn.Write(buf); err != nil {
		return fmt.Errorf("send cancel request to %s: %w", t.address, err)
	}
	_, _ = io.Copy(io.Discard, conn)
	return nil
}
