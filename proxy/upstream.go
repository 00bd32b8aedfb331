package proxy

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"slices"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
)

// upstreamConnectTimeout bounds connecting to a leased database when the lease's
// config sets no ConnectTimeout of its own.
const upstreamConnectTimeout = 30 * time.Second

// upstream is a raw connection to a leased database, authenticated with the proxy's
// credentials and idle, as pgconn left it after start-up.
type upstream struct {
	conn     net.Conn
	params   map[string]string // the server's ParameterStatus values
	txStatus byte
	cancel   *cancelTarget
}

// connectUpstream connects to the lease's database with the client's runtime
// parameters and takes the raw connection over from pgconn, which has done TLS and
// authentication (SCRAM, MD5) for us.
func connectUpstream(ctx context.Context, lease Lease, runtime map[string]string) (*upstream, error) {
	cfg := lease.ConnConfig()
	if cfg.RuntimeParams == nil {
		cfg.RuntimeParams = map[string]string{}
	}
	for k, v := range runtime {
		if k == "options" && cfg.RuntimeParams[k] != "" {
			v = cfg.RuntimeParams[k] + " " + v
		}
		cfg.RuntimeParams[k] = v
	}
	ctx, cancel := context.WithTimeout(ctx, upstreamConnectTimeout)
	defer cancel()
	pc, err := pgconn.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, upstreamError(ctx, cfg, err)
	}
	hc, err := pc.Hijack()
	if err != nil {
		_ = pc.Close(ctx)
		return nil, fmt.Errorf("take over upstream connection to %s: %w", lease.Database(), err)
	}
	return &upstream{
		conn:     newOnceConn(hc.Conn),
		params:   hc.ParameterStatuses,
		txStatus: hc.TxStatus,
		cancel:   newCancelTarget(hc, hc.Config),
	}, nil
}

// upstreamError says why connecting to the upstream failed in the client's terms: the
// server's own error when it refused, 08006 naming the address when it could not be
// reached (pgconn's messages name host, user and database, never the password).
func upstreamError(ctx context.Context, cfg *pgconn.Config, err error) error {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return pgErr
	}
	if errors.Is(ctx.Err(), context.Canceled) {
		return ctx.Err() // shutdown
	}
	_, addr := pgconn.NetworkAddress(cfg.Host, cfg.Port)
	return &pgError{code: codeConnectionFailure,
		message: fmt.Sprintf("upstream %s unreachable: %v", addr, err)}
}

// greet completes the client's start-up with the upstream's parameters, the key the
// proxy issued for cancel requests, and ReadyForQuery.
func (u *upstream) greet(out *msgBuffer, key backendKey) {
	for _, name := range slices.Sorted(maps.Keys(u.params)) {
		out.add(&pgproto3.ParameterStatus{Name: name, Value: u.params[name]})
	}
	out.add(&pgproto3.BackendKeyData{ProcessID: key.pid, SecretKey: key.secret[:]})
	status := u.txStatus
	if status == 0 {
		status = 'I'
	}
	out.add(&pgproto3.ReadyForQuery{TxStatus: status})
}
