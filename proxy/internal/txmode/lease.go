package txmode

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgerrcode"
	"github.com/jackc/pgx/v5/pgconn"
	"go.uber.org/zap"

	"github.com/pgtestproxy/pgtestproxy/internal/pgerr"
	"github.com/pgtestproxy/pgtestproxy/proxy/internal/wire"
)

// ErrLost is what Attach fails with (errors.Is) on a lease that is lost (Lost).
var ErrLost = errors.New("tx-mode lease lost")

// lostError is Attach's refusal on a lost lease: the client's error, which is ErrLost.
type lostError struct{ err *pgerr.Error }

func (e lostError) Error() string   { return e.err.Error() }
func (e lostError) Unwrap() []error { return []error{e.err, ErrLost} }

// Lease is a tx-mode lease: the provider's lease and the backend connection that
// every session on it uses, inside the proxy's transaction. Sessions attach and
// detach; while any is attached they share a txConn. The lease's end (Release) rolls
// the transaction back, resets the backend and hands it to the provider with the
// clone.
type Lease struct {
	clone  Clone
	keeper Keeper // nil: the provider keeps no backend
	guard  *wire.Guard
	log    *zap.Logger
	shared bool   // connections with a session key share it: their names are kept apart
	user   string // the role the backend logs in as
	// StepTimeout bounds each of the proxy's own steps at the lease's start and
	// between its connections (connecting the backend, beginning the transaction,
	// resetting it for the next connection) and its reset at the end. A step that
	// does not finish in time retires the clone. NewLease sets DefaultStepTimeout.
	StepTimeout time.Duration

	// departWaits counts Attach calls waiting for a session's input (depart.go).
	departWaits atomic.Int32

	mu     sync.Mutex
	left   *sync.Cond // a session detached, or Attach's wait is to look again
	be     *Backend
	conn   *txConn // while sessions are attached
	users  int     // sessions attached
	ids    int     // sessions so far
	broken error   // the lease's transaction was lost: no session may use it again
}

// NewLease makes a tx-mode lease of the provider's lease l; shared says connections
// with a session key share it. guard contains the panics of its goroutines.
func NewLease(l Clone, shared bool, guard *wire.Guard) *Lease {
	tl := &Lease{clone: l, guard: guard, log: guard.Log.WithLazy(zap.String("clone", l.Database())), shared: shared,
		user: l.ConnConfig().User, StepTimeout: DefaultStepTimeout}
	tl.keeper, _ = l.(Keeper)
	tl.left = sync.NewCond(&tl.mu)
	return tl
}

// Attach makes a session of client on the lease. The first session opens the backend
// (reusing the one the provider kept with the clone when it was opened with the same
// startup parameters); the first one after the lease had none resets it as a new
// connection would find it; others join the sessions attached, whose settings they
// share. Sessions whose clients already left, or are about to be seen leaving (their
// next input is waiting, depart.go), are waited for, so that a client that closes a
// connection and opens the next finds it as on a plain server. ctx ends the wait.
func (l *Lease) Attach(ctx context.Context, client net.Conn, st Startup) (*Session, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if err := l.awaitDepartures(ctx); err != nil {
		return nil, err
	}
	if l.broken != nil || (l.conn != nil && l.conn.doomed.Load()) {
		cause := l.broken
		if cause == nil {
			cause = l.conn.failed()
		}
		if cause == nil {
			cause = errors.New("its backend ended")
		}
		return nil, lostError{&pgerr.Error{Code: pgerrcode.ConnectionFailure,
			Message: "the tx-mode session's transaction was lost: " + cause.Error(),
			Hint:    "The lease ends when its connections close; the next lease gets a fresh clone."}}
	}
	joiner := l.conn != nil
	if !joiner {
		if err := l.prepare(ctx, st); err != nil {
			return nil, err
		}
		l.be.snapBase()
		l.conn = newTxConn(l.guard, l.log, l.be)
	}
	l.users++
	l.ids++
	l.be.sessions++
	var names *txNames
	if l.shared {
		names = newTxNames(l.ids)
	}
	s := newTxSession(l, l.conn, client, names)
	if l.shared {
		s.seedOwn(l.be, joiner, st)
	}
	l.conn.join(s)
	return s, nil
}

// prepare readies the backend for the first session attached: it opens it, or resets
// it for a new connection, within the lease's StepTimeout. l.mu is held.
func (l *Lease) prepare(ctx context.Context, st Startup) error {
	ctx, cancel := context.WithTimeout(ctx, l.StepTimeout)
	defer cancel()
	var err error
	be := l.be
	if be == nil {
		be, err = l.open(ctx, st)
	} else {
		err = be.resetSession(ctx, st)
	}
	err = lostBackend(l.Database(), l.stepFailed(ctx, "start the tx lease", err))
	var refusal *clientRefusal
	switch {
	case errors.As(err, &refusal):
		return refusal.err
	case err != nil:
		l.broken, l.be = err, nil
		if be != nil {
			_ = be.Close()
		}
		return err
	}
	l.be = be
	return nil
}

// open connects the lease's backend and begins the lease's transaction.
func (l *Lease) open(ctx context.Context, st Startup) (*Backend, error) {
	runtime := st.Runtime
	if l.keeper != nil {
		if be := l.keeper.Kept(); be != nil {
			if maps.Equal(be.runtime, runtime) {
				start := be.start
				if be.snapped && be.alive() {
					start = func(context.Context) error { return be.startLater() }
				}
				err := start(ctx)
				if err == nil {
					return be, nil
				}
				l.log.Debug("kept backend unusable", zap.Error(err))
			}
			_ = be.Close()
		}
	}
	be, err := openTxBackend(ctx, l.clone, runtime)
	var refused *pgconn.PgError
	if errors.As(err, &refused) {
		// The server refused the client's startup parameters: no backend, no harm.
		return nil, &clientRefusal{err: err}
	}
	if err != nil {
		return nil, err
	}
	be.settings = st.Settings
	if err := be.start(ctx); err != nil {
		_ = be.Close()
		return nil, err
	}
	return be, nil
}

// detach removes a session that ended; clean is false when it left the backend in a
// state the proxy cannot vouch for, which ends the lease's transaction for good. The
// last session out stops the backend's txConn.
func (l *Lease) detach(s *Session, clean bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	defer l.left.Broadcast()
	l.users--
	if !clean && l.broken == nil {
		l.broken = errors.New("a session on it failed")
		l.conn.fail(l.broken)
	}
	if l.users > 0 {
		return
	}
	if !l.conn.stop() && l.broken == nil {
		l.broken = errors.New("its backend did not stop cleanly")
	}
	l.conn = nil
	if l.broken != nil {
		_ = l.be.Close()
		l.be = nil
	}
}

// Release ends the lease: the backend is reset and kept with the clone, which goes
// back to the provider clean; anything that fails on the way retires the clone.
func (l *Lease) Release(ctx context.Context, clean bool) {
	l.mu.Lock()
	be, broken := l.be, l.broken
	l.be = nil
	l.mu.Unlock()
	clean = clean && broken == nil
	if e, ok := l.clone.(ender); ok && clean && be != nil {
		e.Ending()
	}
	if be != nil {
		if clean {
			fctx, cancel := context.WithTimeout(ctx, l.StepTimeout)
			err := l.stepFailed(fctx, "reset the tx lease at its end", be.finish(fctx))
			cancel()
			if err != nil {
				l.log.Warn("tx lease end failed", zap.Error(err))
				clean = false
			}
		}
		if clean && l.keeper != nil {
			l.keeper.Keep(be)
		} else {
			_ = be.Close()
		}
	}
	l.clone.Release(ctx, clean)
}

// ender is a Clone that wants to know when its release begins: the backend's reset
// takes a round trip, which the provider's next lease of the template may wait for
// rather than take a clone without a backend.
type ender interface{ Ending() }

// Lost reports whether the lease's transaction is lost: its backend ended (a FATAL
// error, pg_terminate_backend) or the proxy lost track of it. No connection can use a
// lost lease again; the router forgets it at once, so that the next connection of
// its session key gets a fresh lease, and the lease ends (its clone retired) when
// its last connection closes.
func (l *Lease) Lost() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.broken != nil || (l.conn != nil && l.conn.doomed.Load())
}

// UpstreamUser is the role the lease's backend logs in as.
func (l *Lease) UpstreamUser() string { return l.user }

// Database is the name of the leased clone.
func (l *Lease) Database() string { return l.clone.Database() }

// DefaultStepTimeout is a Lease's StepTimeout unless its maker sets another.
const DefaultStepTimeout = 30 * time.Second

// lostBackend turns an error of the lease's start that is no answer of a server — the
// backend's connection broke, as in an upstream restart — into the 08006 a client of a
// plain server that went gets, instead of an internal error. Errors that carry a
// SQLSTATE, and the client's own going, pass as they are.
func lostBackend(clone string, err error) error {
	var pgErr *pgconn.PgError
	var own *pgerr.Error
	var refusal *clientRefusal
	var netErr net.Error
	switch {
	case err == nil, errors.As(err, &pgErr), errors.As(err, &own), errors.As(err, &refusal):
		return err
	case errors.As(err, &netErr), errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return &pgerr.Error{Code: pgerrcode.ConnectionFailure, Detail: err.Error(),
			Message: fmt.Sprintf("lost the connection to clone %s while starting the tx lease", clone),
			Hint:    "The upstream server may have restarted; reconnect to get a fresh lease."}
	}
	return err
}

// stepFailed turns the error of one of the lease's own steps whose deadline (ctx's)
// passed into a clear error for the client. Other errors pass as they are.
func (l *Lease) stepFailed(ctx context.Context, step string, err error) error {
	// The backend's socket deadline is ctx's, and it can fire an instant before ctx's
	// own timer does: a passed deadline is what counts.
	dl, ok := ctx.Deadline()
	if err == nil || !ok || time.Now().Before(dl) {
		return err
	}
	l.log.Warn("tx lease step timed out", zap.String("step", step),
		zap.Duration("timeout", l.StepTimeout), zap.Error(err))
	// The cause goes as text: its timeout is the backend's, not the client's socket's.
	return &pgerr.Error{Code: pgerrcode.ConnectionFailure, Detail: err.Error(),
		Message: fmt.Sprintf("pgtestproxy could not %s on clone %s within %s", step, l.Database(), l.StepTimeout),
		Hint:    "The clone is retired; reconnect to get a fresh one. A lock held on the clone can cause this."}
}
