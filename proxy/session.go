package proxy

import (
	"context"
	"errors"
	"fmt"
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
			s.panics.Add(1)
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
	var out msgBuffer
	p, err := s.admit(m, &out)
	if err != nil {
		s.refuse(cc, conn, &out, err)
		return
	}
	if !s.enterSession() {
		s.refuse(cc, conn, &out, &pgError{code: codeTooManyConnections,
			message: "sorry, too many clients already",
			detail:  fmt.Sprintf("pgtestproxy serves at most %d sessions at once", s.cfg.MaxSessions)})
		return
	}
	defer s.leaveSession()
	if s.auth != nil {
		if err := s.auth.authenticate(conn, p.user, &out); err != nil {
			s.refuse(cc, conn, &out, err)
			return
		}
	}
	out.add(&pgproto3.AuthenticationOk{})
	_ = conn.SetDeadline(time.Time{})
	if p.database == adminDatabase {
		s.runAdmin(cc, conn, &out)
		return
	}
	s.runLease(cc, conn, p, &out)
}

// admit checks what the client asked for, before any authentication or lease.
func (s *Server) admit(m *pgproto3.StartupMessage, out *msgBuffer) (*clientParams, error) {
	if s.shutting.Load() {
		return nil, errShuttingDown
	}
	p, err := parseParams(m.Parameters, s.cfg.DefaultMode)
	if err != nil {
		return nil, err
	}
	if minor := m.ProtocolVersion & 0xffff; minor != 0 || len(p.protocolOptions) > 0 {
		out.add(&pgproto3.NegotiateProtocolVersion{NewestMinorProtocol: 0, UnrecognizedOptions: p.protocolOptions})
	}
	if p.user == "" {
		return nil, newPgError(codeInvalidAuth, "no PostgreSQL user name specified in startup packet")
	}
	return p, nil
}

var errShuttingDown = newPgError(codeAdminShutdown, "pgtestproxy is shutting down")

// runLease acquires the client's lease, connects it to the leased database and
// relays until the session ends, then gives the lease back.
func (s *Server) runLease(cc *clientConn, conn net.Conn, p *clientParams, out *msgBuffer) {
	if s.shutting.Load() {
		s.refuse(cc, conn, out, errShuttingDown)
		return
	}
	req := LeaseRequest{Database: p.database, Mode: p.mode}
	ref, err := s.router.acquire(s.baseCtx, req, p.session)
	if err != nil {
		s.refuse(cc, conn, out, reportable(err))
		return
	}
	clean := false
	defer func() { ref.release(clean) }()
	if p.mode == ModeTx {
		clean = s.runTx(cc, conn, ref, p, out)
		return
	}
	up, err := connectUpstream(s.baseCtx, ref.lease, p.runtime)
	if err != nil {
		s.refuse(cc, conn, out, reportable(err))
		return
	}
	key, err := s.cancels.register(up.cancel)
	if err != nil {
		_ = up.conn.Close()
		s.refuse(cc, conn, out, err)
		return
	}
	defer s.cancels.unregister(key)
	up.greet(out, key)
	if err := out.flush(conn); err != nil {
		_ = up.conn.Close()
		clean = true // the client left; the upstream is fine
		return
	}
	log := s.log.With(zap.String("template", p.database), zap.String("mode", string(p.mode)),
		zap.String("database", ref.lease.Database()))
	log.Debug("session started")
	clean = s.runSession(cc, conn, up, p.mode)
	log.Debug("session ended", zap.Bool("clean", clean))
}

// runSession runs an established db-mode session to its end.
func (s *Server) runSession(cc *clientConn, conn net.Conn, up *upstream, _ Mode) (clean bool) {
	r := newRelay(conn, up.conn, &s.stats)
	cc.setRunner(r, up.conn)
	return r.run()
}

func (s *Server) enterSession() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cfg.MaxSessions > 0 && s.sessions >= s.cfg.MaxSessions {
		return false
	}
	s.sessions++
	s.stats.sessionsTotal.Add(1)
	s.stats.sessionsActive.Add(1)
	return true
}

func (s *Server) leaveSession() {
	s.mu.Lock()
	s.sessions--
	s.mu.Unlock()
	s.stats.sessionsActive.Add(-1)
}

// refuse ends a connection during start-up with a FATAL ErrorResponse, after what out
// holds. A client that simply went away gets nothing.
func (s *Server) refuse(cc *clientConn, conn net.Conn, out *msgBuffer, err error) {
	if out == nil {
		out = &msgBuffer{}
	}
	switch {
	case cc.isCutting() || (s.shutting.Load() && errors.Is(err, context.Canceled)):
		err = errShuttingDown
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, net.ErrClosed):
		return
	case isInterrupted(err):
		err = newPgError(codeProtocolViolation,
			fmt.Sprintf("client did not complete start-up within %s", s.cfg.StartupTimeout))
	}
	var quiet *quietError
	var coded interface{ SQLState() string }
	if errors.As(err, &quiet) || (!errors.As(err, &coded) && isNetError(err)) {
		s.log.Debug("connection failed", zap.Error(err), zap.Stringer("client", cc.raw.RemoteAddr()))
		return // the channel to the client is what broke: nobody to tell
	}
	resp := errorResponse("FATAL", err)
	s.stats.errors.Add(1)
	s.log.Info("connection refused", zap.String("code", resp.Code), zap.String("message", resp.Message),
		zap.Stringer("client", cc.raw.RemoteAddr()))
	_ = conn.SetWriteDeadline(time.Now().Add(goodbyeWriteTimeout))
	out.add(resp)
	if out.flush(conn) == nil {
		lingeringClose(conn)
	}
}

// reportable makes sure an error of the provider or upstream reaches the client,
// even when it wraps a network error (which refuse would take for the client's).
func reportable(err error) error {
	var coded interface{ SQLState() string }
	if errors.As(err, &coded) || errors.Is(err, context.Canceled) {
		return err
	}
	return newPgError(codeInternal, err.Error())
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
	s.stats.cancels.Add(1)
	ctx, cancel := context.WithTimeout(s.baseCtx, cancelTimeout)
	defer cancel()
	if err := t.send(ctx); err != nil {
		s.log.Warn("forward cancel request", zap.Error(err))
	}
}
