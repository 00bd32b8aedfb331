package txmode

import (
	"context"
	"net"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgtestproxy/pgtestproxy/proxy/internal/wire"
)

// Clone is the provider's lease of a clone, as tx mode uses it.
type Clone interface {
	// ConnConfig returns a fresh copy of a configuration that reaches the clone.
	ConnConfig() *pgconn.Config
	// Database is the clone's name on the upstream.
	Database() string
	// Release ends the provider's lease; clean says the clone may be reused.
	Release(ctx context.Context, clean bool)
}

// Keeper is a Clone that keeps a backend with the clone between leases (the proxy's
// BackendKeeper): Keep is given the backend at a clean lease end, Kept hands it to
// the clone's next lease (nil when there is none).
type Keeper interface {
	Keep(*Backend)
	Kept() *Backend
}

// Startup is what a client's startup packet asks of the backend, parsed once when the
// client connected.
type Startup struct {
	// Runtime holds the parameters for the backend connection: everything the client
	// sent but the proxy's own.
	Runtime map[string]string
	// Settings are the settings Runtime makes, in a stable order: the plain
	// parameters and the -c settings in options, as (name, value).
	Settings [][2]string
}

// Greet completes the client's start-up on the lease's backend: its parameters, the
// key the proxy issued for cancel requests, and ReadyForQuery.
func (s *Session) Greet(out *wire.MsgBuffer, key wire.BackendKey) { s.c.be.greet(out, key, s) }

// Abandon detaches a session that never ran (its client left during start-up); the
// backend stays fit.
func (s *Session) Abandon() {
	s.c.detach(s)
	s.lease.detach(s, true)
}

// Run runs the session until the client leaves or something breaks, detaches it from
// its lease, and reports whether it left the lease clean.
func (s *Session) Run() (clean bool) {
	defer func() {
		// A panic in the client pump: the lease's transaction is in an unknown state,
		// so every session of the lease ends.
		if r := recover(); r != nil {
			s.c.guard.Recovered("tx client pump", r)
			_ = s.c.panicked()
			s.c.leaving(s)
			s.c.detach(s)
			_ = s.client.Close()
			s.lease.detach(s, false)
			clean = false
		}
	}()
	clean = s.run()
	s.lease.detach(s, clean)
	return clean
}

// BackendConn is the lease's backend socket, which a forced shutdown closes.
func (s *Session) BackendConn() net.Conn { return s.c.be.conn }

// PID is the process ID of the lease's backend, which every session on it shares.
func (s *Session) PID() uint32 { return s.c.be.cancel.PID() }

// Send is the session's side of a client's CancelRequest: it cancels the client's
// statement running on the backend, and nothing else: when the backend runs another
// session's work, or nothing, it does nothing, as PostgreSQL does for an idle backend.
func (s *Session) Send(ctx context.Context) error { return s.c.cancel(ctx, s) }

// Cut ends the session from outside (shutdown); the lease's other sessions are cut too.
func (s *Session) Cut() { s.cut() }
