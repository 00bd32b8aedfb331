package proxy

import (
	"context"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgtestproxy/pgtestproxy/internal/leasemode"
	"github.com/pgtestproxy/pgtestproxy/proxy/internal/txmode"
)

// LeaseRequest is what a client asked for.
type LeaseRequest struct {
	// Database is the database name in the client's startup packet; it selects the
	// template.
	Database string
	// Mode is the lease mode the client asked for, or Config.DefaultMode.
	Mode leasemode.Mode
	// Session is the client's session key; connections with the same Database, Mode
	// and Session share one lease. Empty means a lease of the connection's own.
	Session string
}

// Lease is one database handed to a client (or to every connection that shares a
// session key).
type Lease interface {
	// ConnConfig returns a fresh copy of a configuration that reaches the leased
	// database with the proxy's upstream credentials. The proxy adds the client's
	// runtime parameters to it.
	ConnConfig() *pgconn.Config
	// Database is the name of the leased database on the upstream.
	Database() string
	// Release ends the lease. clean is false when the proxy saw something go wrong
	// with the lease's upstream connections (an upstream that died, a failed connect,
	// a session cut at shutdown), so the provider should not reuse what it handed out.
	Release(ctx context.Context, clean bool)
}

// KeptBackend is a tx-mode lease's backend connection, rolled back and reset, that a
// BackendKeeper keeps with its clone for the clone's next tx-mode lease. It is opaque
// to the provider, which only closes it (Close) when it does not hand it out again.
type KeptBackend = txmode.Backend

// BackendKeeper is implemented by leases that keep a tx-mode lease's backend
// connection with the clone between leases. At the end of a clean tx-mode lease the
// proxy hands the backend to Keep; the next tx-mode lease of the clone takes it from
// Kept (nil when there is none) instead of starting a backend. The proxy closes what
// Kept returns when it cannot use it (other startup parameters); the provider closes
// what Keep was given when it does not hand it out again.
type BackendKeeper interface {
	Keep(*KeptBackend)
	Kept() *KeptBackend
}

// The proxy hands txmode the provider's lease as it is.
var _ txmode.Keeper = BackendKeeper(nil)

// LeaseProvider hands out leases. An error that carries a SQLSTATE (an
// internal/pgerr.Error, a *pgconn.PgError, anything with a SQLState() string method)
// reaches the client as a FATAL ErrorResponse with that SQLSTATE and the error's
// message; any other error reaches it as XX000.
type LeaseProvider interface {
	Acquire(ctx context.Context, req LeaseRequest) (Lease, error)
}

// AdminFunc answers the admin console's statements that belong to the lease provider
// with a table of text values: SHOW TEMPLATES, SHOW POOLS, SHOW LEASES (what is
// "TEMPLATES", "POOLS" or "LEASES"), the provider's own columns of SHOW STATS (what is
// "STATS": one row, appended to the proxy's), GC and RELOAD. describe asks for the
// columns only, without doing anything (an extended-protocol Describe of a statement).
type AdminFunc func(ctx context.Context, what string, describe bool) (columns []string, rows [][]string, err error)

// ReadyProvider is implemented by providers that can hand out a lease without
// waiting. With Config.ConnectAhead, the db runner acquires through it a lease it
// connects ahead of its client (ahead.go); the leases it returns must implement
// CurrentLease.
type ReadyProvider interface {
	// AcquireReady acquires a lease for req only when one is ready now, and returns
	// (nil, nil) when none is: it never waits, builds or makes the provider build for it.
	AcquireReady(ctx context.Context, req LeaseRequest) (Lease, error)
}

// CurrentLease is a lease that can tell whether an Acquire of its request now would
// hand out a database like it (made from the same template, whose migrations have not
// changed since).
type CurrentLease interface {
	Current(ctx context.Context) bool
}
