package wire

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"slices"
	"time"

	"github.com/jackc/pgerrcode"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/pgtestproxy/pgtestproxy/internal/pgerr"
)

// upstreamConnectTimeout bounds connecting to a leased database when the lease's
// config sets no ConnectTimeout of its own.
const upstreamConnectTimeout = 30 * time.Second

// Target is the leased database an upstream connection reaches.
type Target interface {
	// ConnConfig returns a fresh copy of a configuration that reaches the database.
	ConnConfig() *pgconn.Config
	// Database is the database's name on the upstream.
	Database() string
}

// Upstream is a raw connection to a leased database, authenticated with the proxy's
// credentials and idle, as pgconn left it after start-up.
type Upstream struct {
	Conn     net.Conn
	Params   map[string]string // the server's ParameterStatus values
	TxStatus byte
	Cancel   *CancelTarget
}

// ConnectUpstream connects to the target database with the client's runtime
// parameters and takes the raw connection over from pgconn, which has done TLS and
// authentication (SCRAM, MD5) for us.
func ConnectUpstream(ctx context.Context, target Target, runtime map[string]string) (*Upstream, error) {
	cfg := target.ConnConfig()
	if cfg.RuntimeParams == nil {
		cfg.RuntimeParams = map[string]string{}
	}
	for k, v := range runtime {
		if k == "options" && cfg.RuntimeParams[k] != "" {
			v = cfg.RuntimeParams[k] + " " + v
		}
		cfg.RuntimeParams[k] = v
	}
	dial := cfg.DialFunc
	if dial == nil {
		dial = (&net.Dialer{}).DialContext
	}
	var dialed func() *handoverConn
	cfg.DialFunc, dialed = dialHandover(dial)
	ctx, cancel := context.WithTimeout(ctx, upstreamConnectTimeout)
	defer cancel()
	pc, err := pgconn.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, upstreamError(ctx, cfg, err)
	}
	hc, err := pc.Hijack()
	if err != nil {
		_ = pc.Close(ctx)
		return nil, fmt.Errorf("take over upstream connection to %s: %w", target.Database(), err)
	}
	conn := hc.Conn
	if h := dialed(); h != nil {
		if err := h.handover(); err != nil {
			_ = hc.Conn.Close()
			return nil, fmt.Errorf("take over upstream connection to %s: %w", target.Database(), err)
		}
		conn = h.released(conn)
	}
	return &Upstream{
		Conn:     NewOnceConn(conn),
		Params:   hc.ParameterStatuses,
		TxStatus: hc.TxStatus,
		Cancel:   NewCancelTarget(hc, hc.Config),
	}, nil
}

// upstreamError says why connecting to the upstream failed in the client's terms: the
// server's own error when it refused, 08006 naming the address when it could not be
// reached (pgconn's messages name host, user and database, never the password) — also
// when the server answered that it cannot take connections now (57P03: shutting down,
// starting up, in recovery), which is an unreachable upstream to the proxy's client.
func upstreamError(ctx context.Context, cfg *pgconn.Config, err error) error {
	_, addr := pgconn.NetworkAddress(cfg.Host, cfg.Port)
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		if pgErr.Code == pgerrcode.CannotConnectNow {
			return pgerr.New(pgerrcode.ConnectionFailure, fmt.Sprintf("upstream %s unreachable: %s (SQLSTATE %s)",
				addr, pgErr.Message, pgErr.Code))
		}
		return pgErr
	}
	if errors.Is(ctx.Err(), context.Canceled) {
		return ctx.Err() // shutdown
	}
	return pgerr.New(pgerrcode.ConnectionFailure, fmt.Sprintf("upstream %s unreachable: %v", addr, err))
}

// Greet completes a client's start-up with the server's parameters, the key the
// proxy issued for cancel requests, and ReadyForQuery with status.
func Greet(out *MsgBuffer, params map[string]string, key BackendKey, status byte) {
	for _, name := range slices.Sorted(maps.Keys(params)) {
		out.Add(&pgproto3.ParameterStatus{Name: name, Value: params[name]})
	}
	out.Add(&pgproto3.BackendKeyData{ProcessID: key.PID, SecretKey: key.Secret[:]})
	if status == 0 {
		status = 'I'
	}
	out.Add(&pgproto3.ReadyForQuery{TxStatus: status})
}
