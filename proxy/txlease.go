package proxy

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"sync"
	"time"

	"go.uber.org/zap"
)

// codeObjectInUse is SQLSTATE 55006.
const codeObjectInUse = "55006"

// txTurnWait is how long a connection waits for the session before it on a tx-mode
// lease to end (a client that closes a connection and opens the next one at once
// races the proxy's end of the first) before it is refused.
const txTurnWait = 2 * time.Second

// errTxInUse refuses a second connection on a tx-mode lease while another uses it.
var errTxInUse = &pgError{code: codeObjectInUse,
	message: "the tx-mode session is in use by another connection",
	hint: "pgtestproxy does not multiplex tx-mode connections that share a session key yet: " +
		"give each connection its own session key, or use mode=db."}

// txLease is a tx-mode lease: the provider's lease and the backend connection that
// every session on it uses, inside the proxy's transaction. Sessions take turns on it
// (attach, detach); the lease's end (Release) rolls the transaction back, resets the
// backend and hands it to the provider with the clone.
type txLease struct {
	Lease
	log *zap.Logger

	mu     sync.Mutex
	be     *txBackend
	inUse  bool
	turn   chan struct{} // closed when the session in use detaches
	broken error         // the lease's transaction was lost: no session may use it again
}

func newTxLease(l Lease, log *zap.Logger) *txLease { return &txLease{Lease: l, log: log} }

// attach gives a session the lease's backend, opening it for the lease's first
// session (reusing the backend the provider kept with the clone when it was opened
// with the same startup parameters), or resetting it for the next one.
func (l *txLease) attach(ctx context.Context, runtime map[string]string) (*txBackend, error) {
	be, err := l.take(ctx)
	if err != nil {
		return nil, err
	}
	if be == nil {
		be, err = l.open(ctx, runtime)
	} else {
		err = be.resetSession(ctx, runtime)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	var refusal *clientRefusal
	switch {
	case errors.As(err, &refusal):
		l.endTurn()
		return nil, refusal.err
	case err != nil:
		l.endTurn()
		l.broken, l.be = err, nil
		if be != nil {
			_ = be.Close()
		}
		return nil, err
	}
	be.sessions++
	l.be = be
	return be, nil
}

// take makes the caller the lease's session, waiting a little for one in use to end,
// and returns the backend (nil before the lease's first session).
func (l *txLease) take(ctx context.Context) (*txBackend, error) {
	timer := time.NewTimer(txTurnWait)
	defer timer.Stop()
	l.mu.Lock()
	defer l.mu.Unlock()
	for l.inUse && l.broken == nil {
		turn := l.turn
		l.mu.Unlock()
		select {
		case <-turn:
		case <-timer.C:
			l.mu.Lock()
			return nil, errTxInUse
		case <-ctx.Done():
			l.mu.Lock()
			return nil, ctx.Err()
		}
		l.mu.Lock()
	}
	if l.broken != nil {
		return nil, &pgError{code: codeConnectionFailure,
			message: "the tx-mode session's transaction was lost: " + l.broken.Error(),
			hint:    "The lease ends when its connections close; the next lease gets a fresh clone."}
	}
	l.inUse, l.turn = true, make(chan struct{})
	return l.be, nil
}

// endTurn lets the next session take the lease. l.mu is held.
func (l *txLease) endTurn() {
	l.inUse = false
	close(l.turn)
}

// open connects the lease's backend and begins the lease's transaction.
func (l *txLease) open(ctx context.Context, runtime map[string]string) (*txBackend, error) {
	if k, ok := l.Lease.(BackendKeeper); ok {
		if kept := k.Kept(); kept != nil {
			be, ok := kept.(*txBackend)
			if ok && maps.Equal(be.runtime, runtime) {
				err := be.start(ctx)
				if err == nil {
					return be, nil
				}
				l.log.Debug("kept backend unusable", zap.String("database", l.Database()), zap.Error(err))
			}
			_ = kept.Close()
		}
	}
	be, err := openTxBackend(ctx, l.Lease, runtime)
	if err != nil {
		return nil, err
	}
	if err := be.start(ctx); err != nil {
		_ = be.Close()
		return nil, err
	}
	return be, nil
}

// detach ends a session's turn; clean is false when the session left the backend in
// a state the proxy cannot vouch for, which ends the lease's transaction for good.
func (l *txLease) detach(be *txBackend, clean bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.endTurn()
	if !clean && l.broken == nil {
		l.broken = errors.New("a session on it failed")
		l.be = nil
		_ = be.Close()
	}
}

// Release ends the lease: the backend is reset and kept with the clone, which goes
// back to the provider clean; anything that fails on the way retires the clone.
func (l *txLease) Release(ctx context.Context, clean bool) {
	l.mu.Lock()
	be, broken := l.be, l.broken
	l.be = nil
	l.mu.Unlock()
	clean = clean && broken == nil
	if be != nil {
		if clean {
			if err := be.finish(ctx); err != nil {
				l.log.Warn("tx lease end failed", zap.String("database", l.Database()), zap.Error(err))
				clean = false
			}
		}
		k, keeps := l.Lease.(BackendKeeper)
		if clean && keeps {
			k.Keep(be)
		} else {
			_ = be.Close()
		}
	}
	l.Lease.Release(ctx, clean)
}

// runTx runs a tx-mode session on its lease and reports whether it left the lease
// clean.
func (s *Server) runTx(cc *clientConn, conn net.Conn, ref *leaseRef, p *clientParams, out *msgBuffer) (clean bool) {
	tl, ok := ref.lease.(*txLease)
	if !ok {
		s.refuse(cc, conn, out, fmt.Errorf("lease of %s is not a tx-mode lease", ref.lease.Database()))
		return false
	}
	be, err := tl.attach(s.baseCtx, p.runtime)
	if err != nil {
		s.refuse(cc, conn, out, reportable(err))
		return true // the lease knows whether it broke
	}
	sess := newTxSession(s, conn, be)
	key, err := s.cancels.register(sess)
	if err != nil {
		tl.detach(be, true)
		s.refuse(cc, conn, out, err)
		return true
	}
	defer s.cancels.unregister(key)
	be.greet(out, key)
	if err := out.flush(conn); err != nil {
		tl.detach(be, true)
		return true // the client left; the backend is fine
	}
	cc.setRunner(sess, be.conn)
	clean = sess.run()
	tl.detach(be, clean)
	return clean
}
