package proxy

import (
	"context"
	"io"

	"github.com/jackc/pgx/v5/pgconn"
)

// Mode is a lease mode (SPEC §5, §6).
type Mode string

const (
	// ModeDB leases a fresh clone per lease; the client talks to it directly.
	ModeDB Mode = "db"
	// ModeTx leases a clone inside a transaction the proxy opened.
	ModeTx Mode = "tx"
)

// valid reports whether m is a mode the proxy knows.
func (m Mode) valid() bool { return m == ModeDB || m == ModeTx }

// LeaseRequest is what a client asked for.
type LeaseRequest struct {
	// Database is the database name in the client's startup packet; it selects the
	// template.
	Database string
	// Mode is the lease mode the client asked for, or Config.DefaultMode.
	Mode Mode
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

// BackendKeeper is implemented by leases that keep a tx-mode lease's backend
// connection with the clone between leases (pool.Lease does). At the end of a clean
// tx-mode lease the proxy rolls the backend's transaction back, resets it and hands it
// to Keep; the next tx-mode lease of the clone takes it from Kept (nil when there is
// none) instead of starting a backend. The proxy closes what Kept returns when it
// cannot use it (other startup parameters); the provider closes what Keep was given
// when it does not hand it out again.
type BackendKeeper interface {
	Keep(io.Closer)
	Kept() io.Closer
}

// LeaseProvider hands out leases. Errors that implement SQLState() string reach the
// client as a FATAL ErrorResponse with that SQLSTATE and the error's message; any other
// error reaches it as XX000.
type LeaseProvider interface {
	Acquire(ctx context.Context, req LeaseRequest) (Lease, error)
}

// AdminFunc answers the admin console's SHOW TEMPLATES, SHOW POOLS and SHOW LEASES
// (what is "TEMPLATES", "POOLS" or "LEASES") with a table of text values.
type AdminFunc func(ctx context.Context, what string) (columns []string, rows [][]string, err error)
