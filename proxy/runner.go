package proxy

import (
	"context"
	"errors"
	"net"

	"go.uber.org/zap"

	"github.com/pgtestproxy/pgtestproxy/proxy/internal/txmode"
	"github.com/pgtestproxy/pgtestproxy/proxy/internal/wire"
)

// runner serves the sessions of one lease mode: it leases through a router of its
// own, which gives the provider's lease the runner's form, and runs the client's
// session on it. The mode is decided once, when the startup packet is parsed; the
// session then goes to that mode's runner.
type runner interface {
	run(cc *clientConn, conn net.Conn, p *clientParams, out *wire.MsgBuffer)
	// close releases the lingering leases; call it after every session ended.
	close()
}

// serveLeased acquires the client's lease from r, runs serve on it and gives the
// lease back, clean as serve reports.
func serveLeased[L heldLease](s *Server, r *router[L], cc *clientConn, conn net.Conn, p *clientParams,
	out *wire.MsgBuffer, serve func(L) (clean bool)) {
	if s.shutting.Load() {
		s.refuse(cc, conn, out, wire.ErrShuttingDown)
		return
	}
	ctx, gone := s.baseCtx, func() bool { return false }
	if p.request().Session == "" { // a shared lease's acquire serves other connections too
		ctx, gone = watchGoneSoon(s.baseCtx, cc.raw.Conn, goneWatchDelay)
	}
	ref, err := r.acquire(ctx, p.request())
	if gone() {
		if err == nil {
			ref.release(true)
		}
		return // the client left while it waited: nobody to serve or tell
	}
	if err != nil {
		s.refuse(cc, conn, out, reportable(err))
		return
	}
	serveRef(s, ref, cc, serve)
}

// serveRef runs serve on the lease ref holds and gives it back, clean as serve reports.
func serveRef[L heldLease](s *Server, ref *leaseRef[L], cc *clientConn, serve func(L) (clean bool)) {
	clean := false
	defer func() { ref.release(clean) }()
	clone := ref.lease.Database()
	s.leases.attach(clone, cc)
	defer s.leases.detach(clone, cc)
	clean = serve(ref.lease)
	cc.leave() // the client is gone: the lease's end is the proxy's, not a session
}

// dbRunner runs db-mode sessions: a byte relay between the client and its clone.
type dbRunner struct {
	s      *Server
	router *router[Lease]
	ahead  *ahead // nil unless Config.ConnectAhead and the provider can
}

func newDBRunner(s *Server) *dbRunner {
	same := func(l Lease, _ bool) Lease { return l }
	d := &dbRunner{s: s, router: newRouter(s.cfg.Provider, same, s.cfg.Linger, s.log, &s.stats, &s.stats.DB, s.leases)}
	if rp, ok := s.cfg.Provider.(ReadyProvider); ok && s.cfg.ConnectAhead {
		d.ahead = newAhead(d, rp)
	}
	return d
}

// close releases the leases connected ahead, then the lingering ones.
func (d *dbRunner) close() {
	if d.ahead != nil {
		d.ahead.close()
	}
	d.router.close()
}

func (d *dbRunner) run(cc *clientConn, conn net.Conn, p *clientParams, out *wire.MsgBuffer) {
	if d.ahead != nil && p.session == "" {
		if sp := d.ahead.take(p); sp != nil {
			ref := d.router.adopt(sp.lease, p.request(), sp.took)
			serveRef(d.s, ref, cc, func(l Lease) bool { return d.relay(cc, conn, l, sp.up, p, out) })
			return
		}
	}
	serveLeased(d.s, d.router, cc, conn, p, out, func(l Lease) bool { return d.relay(cc, conn, l, nil, p, out) })
}

// connect opens the upstream connection of a session with the client's parameters p
// to its leased database.
func (d *dbRunner) connect(ctx context.Context, l Lease, p *clientParams) (*wire.Upstream, error) {
	s := d.s
	up, err := wire.ConnectUpstream(ctx, l, s.roles.startupAs(p, l.ConnConfig().User).Runtime)
	if err != nil && s.roles.refused(err, p.user) {
		up, err = wire.ConnectUpstream(ctx, l, p.startup.Runtime)
	}
	return up, err
}

// relay connects the session to its leased database (unless up is the connection made
// ahead) and relays until the session ends. It reports whether the upstream
// connection ended without a failure.
func (d *dbRunner) relay(cc *clientConn, conn net.Conn, l Lease, up *wire.Upstream, p *clientParams,
	out *wire.MsgBuffer) (clean bool) {
	s := d.s
	if up == nil {
		var err error
		if up, err = d.connect(s.baseCtx, l, p); err != nil {
			s.refuse(cc, conn, out, reportable(err))
			return false
		}
	}
	key, err := s.cancels.register(up.Cancel.PID(), up.Cancel)
	if err != nil {
		_ = up.Conn.Close()
		s.refuse(cc, conn, out, err)
		return false
	}
	defer s.cancels.unregister(key)
	wire.Greet(out, up.Params, key, up.TxStatus)
	if err := out.Flush(conn); err != nil {
		_ = up.Conn.Close()
		return true // the client left; the upstream is fine
	}
	log := p.logger(s.log, cc).WithLazy(zap.String("clone", l.Database()))
	log.Debug("session started")
	r := newRelay(conn, up.Conn, s.guard)
	cc.setRunner(r, up.Conn)
	clean = r.run() && !startupNamesStatsOff(p.startup.Runtime)
	log.Debug("session ended", zap.Bool("clean", clean))
	return clean
}

// txRunner runs tx-mode sessions on a tx-mode lease's backend (package txmode).
type txRunner struct {
	s      *Server
	router *router[*txmode.Lease]
}

func newTxRunner(s *Server) *txRunner {
	wrap := func(l Lease, shared bool) *txmode.Lease {
		tl := txmode.NewLease(l, shared, s.guard)
		tl.StepTimeout = s.cfg.LeaseStepTimeout
		return tl
	}
	return &txRunner{s: s, router: newRouter(s.cfg.Provider, wrap, s.cfg.Linger, s.log, &s.stats, &s.stats.Tx, s.leases)}
}

func (t *txRunner) close() { t.router.close() }

// attachTries bounds how often a tx-mode connection takes a fresh shared lease after
// the one routing gave it was lost before it could attach.
const attachTries = 3

func (t *txRunner) run(cc *clientConn, conn net.Conn, p *clientParams, out *wire.MsgBuffer) {
	for try := 1; ; try++ {
		lost := false
		serveLeased(t.s, t.router, cc, conn, p, out, func(l *txmode.Lease) bool {
			var clean bool
			clean, lost = t.serve(cc, conn, l, p, out, try < attachTries)
			return clean
		})
		if !lost {
			return
		}
	}
}

// serve runs a tx-mode session on its lease and reports whether it left the lease
// clean. lost says the lease was lost before the session could attach (only when
// retry allows it; else the client is refused): routing forgot it, so the caller
// tries a fresh one.
func (t *txRunner) serve(cc *clientConn, conn net.Conn, l *txmode.Lease, p *clientParams, out *wire.MsgBuffer,
	retry bool) (clean, lost bool) {
	s := t.s
	sess, err := l.Attach(s.baseCtx, conn, s.roles.startupAs(p, l.UpstreamUser()))
	if err != nil && s.roles.refused(err, p.user) {
		sess, err = l.Attach(s.baseCtx, conn, p.startup)
	}
	if err != nil {
		if retry && errors.Is(err, txmode.ErrLost) {
			return false, true
		}
		s.refuse(cc, conn, out, reportable(err))
		return true, false // the lease knows whether it broke
	}
	key, err := s.cancels.register(sess.PID(), sess)
	if err != nil {
		sess.Abandon()
		s.refuse(cc, conn, out, err)
		return true, false
	}
	defer s.cancels.unregister(key)
	sess.Greet(out, key)
	if err := out.Flush(conn); err != nil {
		sess.Abandon()
		return true, false // the client left; the backend is fine
	}
	log := p.logger(s.log, cc).WithLazy(zap.String("clone", l.Database()))
	log.Debug("session started")
	cc.setRunner(sess, sess.BackendConn())
	clean = sess.Run()
	log.Debug("session ended", zap.Bool("clean", clean))
	return clean, false
}
