package proxy

import (
	"context"
	"errors"
	"fmt"
	"github.com/jackc/pgerrcode"
	"github.com/pgtestproxy/pgtestproxy/internal/pgerr"
	"github.com/pgtestproxy/pgtestproxy/proxy/internal/txmode"
	"github.com/pgtestproxy/pgtestproxy/proxy/internal/wire"
	"io"
	"net"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"
	"go.uber.org/zap"
)

// adminDatabase is the database name of the admin console (SPEC §7).
const adminDatabase = "pgtestproxy"

// serveConn carries one accepted connection from its first byte to its end.
func (s *Server) serveConn(cc *clientConn) {
	defer s.untrack(cc)
	defer cc.raw.Close()
	defer func() {
		// One bad session must not take the others down with the process.
		if r := recover(); r != nil {
			s.stats.Panics.Add(1)
			s.log.Error("session panicked", zap.Any("panic", r), zap.StackSkip("stack", 1))
		}
	}()
	_ = cc.raw.SetDeadline(time.Now().Add(s.cfg.StartupTimeout))
	conn, msg, err := s.negotiate(cc.raw)
	if err != nil {
		s.refuse(cc, conn, nil, err)
		return
	}
	switch m := msg.(type) {
	case *pgproto3.CancelRequest:
		s.forwardCancel(m)
	case *pgproto3.StartupMessage:
		s.startSession(cc, conn, m)
	}
}

// startSession admits a client that sent its StartupMessage and runs its session.
func (s *Server) startSession(cc *clientConn, conn net.Conn, m *pgproto3.StartupMessage) {
	var out wire.MsgBuffer
	p, err := s.admit(m, &out)
	if err != nil {
		s.refuse(cc, conn, &out, err)
		return
	}
	if !s.enterSession() {
		s.refuse(cc, conn, &out, &pgerr.Error{Code: pgerrcode.TooManyConnections,
			Message: "sorry, too many clients already",
			Detail:  fmt.Sprintf("pgtestproxy serves at most %d sessions at once", s.cfg.MaxSessions)})
		return
	}
	defer s.leaveSession()
	if s.auth != nil {
		if err := s.auth.authenticate(conn, p.user, &out); err != nil {
			s.refuse(cc, conn, &out, err)
			return
		}
	}
	out.Add(&pgproto3.AuthenticationOk{})
	_ = conn.SetDeadline(time.Time{})
	if p.database == adminDatabase {
		s.runAdmin(cc, conn, &out)
		return
	}
	s.runners[p.mode].run(cc, conn, p, &out)
}

// admit checks what the client asked for, before any authentication or lease.
func (s *Server) admit(m *pgproto3.StartupMessage, out *wire.MsgBuffer) (*clientParams, error) {
	if s.shutting.Load() {
		return nil, wire.ErrShuttingDown
	}
	p, err := parseParams(m.Parameters, s.cfg.DefaultMode)
	if err != nil {
		return nil, err
	}
	if minor := m.ProtocolVersion & 0xffff; minor != 0 || len(p.protocolOptions) > 0 {
		out.Add(&pgproto3.NegotiateProtocolVersion{NewestMinorProtocol: 0, UnrecognizedOptions: p.protocolOptions})
	}
	if p.user == "" {
		return nil, pgerr.New(pgerrcode.InvalidAuthorizationSpecification, "no PostgreSQL user name specified in startup packet")
	}
	return p, nil
}

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
	ref, err := r.acquire(s.baseCtx, p.request())
	if err != nil {
		s.refuse(cc, conn, out, reportable(err))
		return
	}
	clean := false
	defer func() { ref.release(clean) }()
	clean = serve(ref.lease)
}

// dbRunner runs db-mode sessions: a byte relay between the client and its clone.
type dbRunner struct {
	s      *Server
	router *router[Lease]
}

func newDBRunner(s *Server) *dbRunner {
	same := func(l Lease, _ bool) Lease { return l }
	return &dbRunner{s: s, router: newRouter(s.cfg.Provider, same, s.cfg.Linger, s.log, &s.stats)}
}

func (d *dbRunner) close() { d.router.close() }

func (d *dbRunner) run(cc *clientConn, conn net.Conn, p *clientParams, out *wire.MsgBuffer) {
	serveLeased(d.s, d.router, cc, conn, p, out, func(l Lease) bool { return d.relay(cc, conn, l, p, out) })
}

// relay connects the session to its leased database and relays until the session
// ends. It reports whether the upstream connection ended without a failure.
func (d *dbRunner) relay(cc *clientConn, conn net.Conn, l Lease, p *clientParams, out *wire.MsgBuffer) (clean bool) {
	s := d.s
	up, err := wire.ConnectUpstream(s.baseCtx, l, p.startup.Runtime)
	if err != nil {
		s.refuse(cc, conn, out, reportable(err))
		return false
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
	log := p.logger(s.log, cc).With(zap.String("clone", l.Database()))
	log.Debug("session started")
	r := newRelay(conn, up.Conn, &s.stats)
	cc.setRunner(r, up.Conn)
	clean = r.run()
	log.Debug("session ended", zap.Bool("clean", clean))
	return clean
}

// txRunner runs tx-mode sessions on a tx-mode lease's backend (package txmode).
type txRunner struct {
	s      *Server
	router *router[*txmode.Lease]
}

func newTxRunner(s *Server) *txRunner {
	wrap := func(l Lease, shared bool) *txmode.Lease { return txmode.NewLease(l, shared, s.log, &s.stats) }
	return &txRunner{s: s, router: newRouter(s.cfg.Provider, wrap, s.cfg.Linger, s.log, &s.stats)}
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
	sess, err := l.Attach(s.baseCtx, conn, p.startup)
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
	log := p.logger(s.log, cc).With(zap.String("clone", l.Database()))
	log.Debug("session started")
	cc.setRunner(sess, sess.BackendConn())
	clean = sess.Run()
	log.Debug("session ended", zap.Bool("clean", clean))
	return clean, false
}

func (s *Server) enterSession() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cfg.MaxSessions > 0 && s.sessions >= s.cfg.MaxSessions {
		return false
	}
	s.sessions++
	s.stats.SessionsTotal.Add(1)
	s.stats.SessionsActive.Add(1)
	return true
}

func (s *Server) leaveSession() {
	s.mu.Lock()
	s.sessions--
	s.mu.Unlock()
	s.stats.SessionsActive.Add(-1)
}

// refuse ends a connection during start-up with a FATAL ErrorResponse, after what out
// holds. A client that simply went away gets nothing.
func (s *Server) refuse(cc *clientConn, conn net.Conn, out *wire.MsgBuffer, err error) {
	if out == nil {
		out = &wire.MsgBuffer{}
	}
	switch {
	case cc.isCutting() || (s.shutting.Load() && errors.Is(err, context.Canceled)):
		err = wire.ErrShuttingDown
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, net.ErrClosed):
		return
	case wire.IsInterrupted(err):
		err = pgerr.New(pgerrcode.ProtocolViolation,
			fmt.Sprintf("client did not complete start-up within %s", s.cfg.StartupTimeout))
	}
	var quiet *quietError
	if errors.As(err, &quiet) || (pgerr.SQLState(err) == "" && isNetError(err)) {
		s.log.Debug("connection failed", zap.Error(err), zap.Stringer("client", cc.raw.RemoteAddr()))
		return // the channel to the client is what broke: nobody to tell
	}
	resp := wire.ErrorResponse("FATAL", err)
	s.stats.Errors.Add(1)
	s.log.Info("connection refused", zap.String("code", resp.Code), zap.String("message", resp.Message),
		zap.Stringer("client", cc.raw.RemoteAddr()))
	_ = conn.SetWriteDeadline(time.Now().Add(wire.GoodbyeWriteTimeout))
	out.Add(resp)
	if out.Flush(conn) == nil {
		wire.LingeringClose(conn)
	}
}

// reportable makes sure an error of the provider or upstream reaches the client,
// even when it wraps a network error (which refuse would take for the client's).
func reportable(err error) error {
	if pgerr.SQLState(err) != "" || errors.Is(err, context.Canceled) {
		return err
	}
	return pgerr.New(pgerrcode.InternalError, err.Error())
}

// isNetError reports whether err is a failure of the client's socket itself.
func isNetError(err error) bool {
	var ne net.Error
	return errors.As(err, &ne)
}

// forwardCancel passes a client's CancelRequest on to the backend behind the key, if
// the proxy issued it; an unknown key is ignored silently, as PostgreSQL does.
func (s *Server) forwardCancel(req *pgproto3.CancelRequest) {
	t := s.cancels.lookup(req)
	if t == nil {
		s.log.Debug("cancel request with unknown key ignored")
		return
	}
	s.stats.Cancels.Add(1)
	ctx, cancel := context.WithTimeout(s.baseCtx, wire.CancelTimeout)
	defer cancel()
	if err := t.Send(ctx); err != nil {
		s.log.Warn("forward cancel request", zap.Error(err))
	}
}
