package pool

import (
	"net"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
)

// Settings that make either end of an upstream connection notice soon that the other
// went: a killed proxy's backends stop within seconds instead of running their query
// to its end (or until the next GC), and the pool notices a vanished server.
const (
	// backendCheckInterval is the backends' client_connection_check_interval
	// (PostgreSQL 14+): how often a backend running a query checks that its client is
	// still connected.
	backendCheckInterval = 2 * time.Second
	// TCP keepalives, on the pool's sockets and (tcp_keepalives_*) on the server's.
	keepAliveIdle     = 10 * time.Second
	keepAliveInterval = 5 * time.Second
	keepAliveCount    = 3
)

// watchPeers sets cfg's connections up to notice a vanished peer: TCP keepalives on the
// client socket, and the session settings that make the backend check its client. The
// settings apply to every connection made from cfg: the pool's own and the ones a
// lease's ConnConfig makes.
func (p *Pool) watchPeers(cfg *pgx.ConnConfig) {
	d := &net.Dialer{KeepAliveConfig: net.KeepAliveConfig{
		Enable: true, Idle: keepAliveIdle, Interval: keepAliveInterval, Count: keepAliveCount,
	}}
	cfg.DialFunc = d.DialContext
	if cfg.RuntimeParams == nil {
		cfg.RuntimeParams = map[string]string{}
	}
	secs := func(d time.Duration) string { return strconv.Itoa(int(d / time.Second)) }
	cfg.RuntimeParams["tcp_keepalives_idle"] = secs(keepAliveIdle)
	cfg.RuntimeParams["tcp_keepalives_interval"] = secs(keepAliveInterval)
	cfg.RuntimeParams["tcp_keepalives_count"] = strconv.Itoa(keepAliveCount)
	if p.major >= 14 {
		cfg.RuntimeParams["client_connection_check_interval"] = strconv.Itoa(int(backendCheckInterval / time.Millisecond))
	}
}
