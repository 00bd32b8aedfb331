package proxy

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"sync"

	"go.uber.org/zap"
)

// txLease is a tx-mode lease: the provider's lease and the backend connection that
// every session on it uses, inside the proxy's transaction. Sessions attach and
// detach; while any is attached they share a txConn. The lease's end (Release) rolls
// the transaction back, resets the backend and hands it to the provider with the
// clone.
type txLease struct {
	Lease
	log    *zap.Logger
	shared bool // connections with a session key share it: their names are kept apart

	mu     sync.Mutex
	left   *sync.Cond // a session detached
	be     *txBackend
	conn   *txConn // while sessions are attached
	users  int     // sessions attached
	ids    int     // sessions so far
	broken error   // the lease's transaction was lost: no session may use it again
}

func newTxLease(l Lease, log *zap.Logger, shared bool) *txLease {
	tl := &txLease{Lease: l, log: log, shared: shared}
	tl.left = sync.NewCond(&tl.mu)
	return tl
}

// attach makes a session of client on the lease. The first session opens the backend
// (reusing the one the provider kept with the clone when it was opened with the same
// startup parameters); the first one after the lease had none resets it as a new
// connection would find it; others join the sessions attached, whose settings they
// share. Sessions whose clients already left are waited for, so that a client that
// closes a connection and opens the next finds it as on a plain server.
func (l *txLease) attach(ctx context.Context, srv *Server, client net.Conn, runtime map[string]string) (*txSession, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for l.conn != nil && l.conn.allLeaving() && ctx.Err() == nil {
		l.left.Wait()
	}
	if l.broken != nil {
		return nil, &pgError{code: codeConnectionFailure,
			message: "the tx-mode session's transaction was lost: " + l.broken.Error(),
			hint:    "The lease ends when its connections close; the next lease gets a fresh clone."}
	}
	if l.conn == nil {
		if err := l.prepare(ctx, runtime); err != nil {
			return nil, err
		}
		l.conn = newTxConn(srv, l.be)
	}
	l.users++
	l.ids++
	l.be.sessions++
	var names *txNames
	if l.shared {
		names = newTxNames(l.ids)
	}
	s := newTxSession(l.conn, client, names)
	l.conn.join(s)
	return s, nil
}

// prepare readies the backend for the first session attached: it opens it, or resets
// it for a new connection. l.mu is held.
func (l *txLease) prepare(ctx context.Context, runtime map[string]string) error {
	var err error
	be := l.be
	if be == nil {
		be, err = l.open(ctx, runtime)
	} else {
		err = be.resetSession(ctx, runtime)
	}
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

// detach removes a session that ended; clean is false when it left the backend in a
// state the proxy cannot vouch for, which ends the lease's transaction for good. The
// last session out stops the backend's txConn.
func (l *txLease) detach(s *txSession, clean bool) {
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
	sess, err := tl.attach(s.baseCtx, s, conn, p.runtime)
	if err != nil {
		s.refuse(cc, conn, out, reportable(err))
		return true // the lease knows whether it broke
	}
	key, err := s.cancels.register(sess)
	if err != nil {
		sess.c.detach(sess)
		tl.detach(sess, true)
		s.refuse(cc, conn, out, err)
		return true
	}
	defer s.cancels.unregister(key)
	sess.c.be.greet(out, key)
	if err := out.flush(conn); err != nil {
		sess.c.detach(sess)
		tl.detach(sess, true)
		return true // the client left; the backend is fine
	}
	cc.setRunner(sess, sess.c.be.conn)
	clean = sess.run()
	tl.detach(sess, clean)
	return clean
}
