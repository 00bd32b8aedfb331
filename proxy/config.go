package proxy

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"time"

	"go.uber.org/zap"

	"github.com/pgtestproxy/pgtestproxy/internal/leasemode"
	"github.com/pgtestproxy/pgtestproxy/proxy/internal/txmode"
)

// Defaults for the zero values of Config.
const (
	DefaultAddr           = "127.0.0.1:6543"
	DefaultMaxSessions    = 256
	DefaultStartupTimeout = 10 * time.Second
	DefaultShutdownGrace  = 10 * time.Second
	DefaultLinger         = 2 * time.Second
	// DefaultLeaseStepTimeout is Config.LeaseStepTimeout's default.
	DefaultLeaseStepTimeout = txmode.DefaultStepTimeout
)

// Config configures a Server. The zero value of every field but Provider is usable.
type Config struct {
	// Listener, when set, is where the server accepts clients; Addr is then ignored.
	// The server closes it.
	Listener net.Listener
	// Addr is the TCP address to listen on when Listener is nil. Empty means
	// DefaultAddr; port 0 picks a free port (see Server.Addr).
	Addr string
	// Provider hands out the databases. Required.
	Provider LeaseProvider
	// Admin answers SHOW TEMPLATES, POOLS and LEASES on the admin console. Nil makes
	// those statements fail with a clear error; SHOW STATS and SHOW VERSION still work.
	Admin AdminFunc
	// Password turns on SCRAM-SHA-256 authentication for clients (any user name).
	// Empty means trust.
	Password string
	// AllowNonLoopback permits listening on a non-loopback address without a Password.
	// Without it New refuses, so a trust-mode proxy is never reachable from the network.
	AllowNonLoopback bool
	// TLS, when set, lets clients negotiate TLS with an SSLRequest. Nil answers every
	// SSLRequest 'N'.
	TLS *tls.Config
	// DefaultMode is the lease mode of clients that name none. Empty means leasemode.DB.
	DefaultMode leasemode.Mode
	// MaxSessions caps concurrent client sessions; one more is refused with SQLSTATE
	// 53300. A session counts from its startup until its client has left, not while
	// the proxy then ends its lease. Zero means DefaultMaxSessions; negative means no cap.
	MaxSessions int
	// StartupTimeout bounds how long a client may take to send its startup packet and
	// authenticate; a client that takes longer is disconnected without a word, as
	// PostgreSQL does at authentication_timeout. Zero means DefaultStartupTimeout.
	StartupTimeout time.Duration
	// ShutdownGrace is how long Close waits for sessions to end before cutting them.
	// Zero means DefaultShutdownGrace; negative means cut at once.
	ShutdownGrace time.Duration
	// Linger is how long a lease shared through a session key outlives its last
	// connection, so a client pool that reconnects keeps its database. Zero means
	// DefaultLinger; negative means release at once.
	Linger time.Duration
	// ConnectAhead makes db-mode connections without a session key take a lease the
	// server acquired and connected to ahead of them, when the Provider is a
	// ReadyProvider (ahead.go).
	ConnectAhead bool
	// LeaseStepTimeout bounds each of the proxy's own steps when a tx-mode lease starts,
	// passes to its next connection or ends (connecting its backend, beginning or
	// resetting its transaction): a step that does not finish in time retires the clone
	// and refuses the client with SQLSTATE 08006. Zero means DefaultLeaseStepTimeout.
	LeaseStepTimeout time.Duration
	// Version is reported by SHOW VERSION. Empty means "devel".
	Version string
	// Logger receives what the server does. Nil means zap.NewNop().
	Logger *zap.Logger

	// aheadIdle, set only by the package's tests, replaces aheadIdle.
	aheadIdle time.Duration
	// panicHook, set only by the package's tests, is called at each session
	// goroutine kind's panic injection point (wire.Guard.At).
	panicHook func(where string)
}

// Validate reports the first problem with c.
func (c *Config) Validate() error {
	if c.Provider == nil {
		return errors.New("proxy config: Provider is required")
	}
	if c.DefaultMode != "" && !c.DefaultMode.Valid() {
		return fmt.Errorf("proxy config: DefaultMode %q: allowed values are db and tx", c.DefaultMode)
	}
	addr := c.Addr
	if c.Listener != nil {
		addr = c.Listener.Addr().String()
		if c.Listener.Addr().Network() == "unix" {
			return nil
		}
	} else if addr == "" {
		addr = DefaultAddr
	}
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("proxy config: listen address %q: %w", addr, err)
	}
	if c.Password == "" && !c.AllowNonLoopback && !isLoopback(host) {
		return fmt.Errorf("proxy config: refusing to listen on non-loopback address %s without a password "+
			"(set a password or allow non-loopback explicitly)", addr)
	}
	return nil
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// withDefaults returns c with zero values replaced by their defaults.
func (c Config) withDefaults() Config {
	if c.Addr == "" {
		c.Addr = DefaultAddr
	}
	if c.DefaultMode == "" {
		c.DefaultMode = leasemode.DB
	}
	if c.MaxSessions == 0 {
		c.MaxSessions = DefaultMaxSessions
	}
	if c.LeaseStepTimeout <= 0 {
		c.LeaseStepTimeout = DefaultLeaseStepTimeout
	}
	if c.StartupTimeout <= 0 {
		c.StartupTimeout = DefaultStartupTimeout
	}
	switch {
	case c.ShutdownGrace == 0:
		c.ShutdownGrace = DefaultShutdownGrace
	case c.ShutdownGrace < 0:
		c.ShutdownGrace = 0
	}
	switch {
	case c.Linger == 0:
		c.Linger = DefaultLinger
	case c.Linger < 0:
		c.Linger = 0
	}
	if c.Version == "" {
		c.Version = "devel"
	}
	if c.Logger == nil {
		c.Logger = zap.NewNop()
	}
	return c
}
