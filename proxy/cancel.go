package proxy

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
)

// cancelTimeout bounds forwarding one CancelRequest to the upstream.
const cancelTimeout = 10 * time.Second

// backendKey is the BackendKeyData the proxy issues to a client (protocol 3.0: a
// 4-byte secret).
type backendKey struct {
	pid    uint32
	secret [4]byte
}

// cancelTarget is the real backend behind a proxy-issued key, and how to reach it.
type cancelTarget struct {
	pid     uint32
	secret  []byte
	network string
	address string
	dial    pgconn.DialFunc
}

// newCancelTarget records how to cancel the backend of an upstream connection made
// with cfg.
func newCancelTarget(hc *pgconn.HijackedConn, cfg *pgconn.Config) *cancelTarget {
	t := &cancelTarget{pid: hc.PID, secret: append([]byte(nil), hc.SecretKey...), dial: cfg.DialFunc}
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

// send delivers a CancelRequest for the target's backend and waits for the server
// to close the connection, as PostgreSQL clients do.
func (t *cancelTarget) send(ctx context.Context) error {
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

// cancelRegistry maps the keys the proxy issued to real backends.
type cancelRegistry struct {
	mu      sync.Mutex
	targets map[uint32]registered
}

type registered struct {
	secret [4]byte
	target canceler
}

// canceler is what a proxy-issued key cancels: a backend directly (db mode), or a
// tx-mode session, which decides whether its client's statement is the one running.
type canceler interface {
	send(ctx context.Context) error
}

func newCancelRegistry() *cancelRegistry {
	return &cancelRegistry{targets: map[uint32]registered{}}
}

// register issues a fresh random key for t.
func (c *cancelRegistry) register(t canceler) (backendKey, error) {
	var b [8]byte
	c.mu.Lock()
	defer c.mu.Unlock()
	for {
		if _, err := rand.Read(b[:]); err != nil {
			return backendKey{}, fmt.Errorf("random backend key: %w", err)
		}
		// Keep the process ID a positive int32, as clients that store it signed expect.
		pid := binary.BigEndian.Uint32(b[:4]) & 0x7fffffff
		if _, taken := c.targets[pid]; pid == 0 || taken {
			continue
		}
		k := backendKey{pid: pid}
		copy(k.secret[:], b[4:])
		c.targets[pid] = registered{secret: k.secret, target: t}
		return k, nil
	}
}

func (c *cancelRegistry) unregister(k backendKey) {
	c.mu.Lock()
	delete(c.targets, k.pid)
	c.mu.Unlock()
}

// lookup returns the target of a client's CancelRequest, or nil when the key is not
// one the proxy issued.
func (c *cancelRegistry) lookup(req *pgproto3.CancelRequest) canceler {
	c.mu.Lock()
	r, ok := c.targets[req.ProcessID]
	c.mu.Unlock()
	if !ok || subtle.ConstantTimeCompare(r.secret[:], req.SecretKey) != 1 {
		return nil
	}
	return r.target
}
