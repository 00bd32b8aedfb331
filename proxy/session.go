package proxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"github.com/jackc/pgerrcode"
	"github.com/jackc/pgx/v5/pgproto3"
	"go.uber.org/zap"

	"github.com/pgtestproxy/pgtestproxy/internal/pgerr"
	"github.com/pgtestproxy/pgtestproxy/proxy/internal/wire"
)

// adminDatabase is the database name of the admin console (README, "The admin console").
const adminDatabase = "pgtestproxy"

// serveConn carries one accepted connection from its first byte to its end.
func (s *Server) serveConn(cc *clientConn) {
	defer s.untrack(cc)
	defer cc.raw.Close()
	var conn net.Conn // the client's stream once negotiated (TLS or not)
	defer func() {
		// One bad session must not take the others down with the process. What
		// runs the session (relay, tx session, console) writes whole messages, and
		// the relay and tx mode contain their own panics, so the client's stream is
		// between two messages here.
		if r := recover(); r != nil {
			s.guard.Recovered("session", r)
			if conn != nil && wire.SayInternalError(conn) {
				s.stats.Error(pgerrcode.InternalError)
			}
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
	// The admin console has room of its own, as a plain server keeps connections for
	// superusers: SHOW POOLS is wanted most when the clients fill the proxy.
	enter, leave := s.enterSession, s.leaveSession
	limit, what := s.cfg.MaxSessions, "sessions"
	if p.database == adminDatabase {
		enter, leave = s.enterAdmin, s.leaveAdmin
		limit, what = maxAdminSessions, "admin console sessions"
	}
	if !enter() {
		s.refuse(cc, conn, &out, &pgerr.Error{Code: pgerrcode.TooManyConnections,
			Message: "sorry, too many clients already",
			Detail:  fmt.Sprintf("pgtestproxy serves at most %d %s at once", limit, what)})
		return
	}
	cc.leave = sync.OnceFunc(leave)
	defer cc.leave()
	if s.auth != nil {
		if err := s.auth.authenticate(conn, p.user, &out); err != nil {
			s.refuse(cc, conn, &out, err)
			return
		}
	}
	out.Add(&pgproto3.AuthenticationOk{})
	_ = conn.SetDeadline(time.Time{})
	s.guard.At("session")
	if p.database == adminDatabase {
		s.runAdmin(cc, conn, &out)
		return
	}
	mc := modeCounters(&s.stats, p.mode)
	mc.SessionsTotal.Add(1)
	mc.SessionsActive.Add(1)
	defer mc.SessionsActive.Add(-1)
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

// maxAdminSessions bounds the admin console's sessions, which do not count against
// MaxSessions.
const maxAdminSessions = 16

// enterAdmin and leaveAdmin are enterSession and leaveSession for the admin console:
// its sessions count in the statistics as any, against a bound of their own.
func (s *Server) enterAdmin() bool {
	if s.admins.Add(1) > maxAdminSessions {
		s.admins.Add(-1)
		return false
	}
	s.stats.SessionsTotal.Add(1)
	s.stats.SessionsActive.Add(1)
	return true
}

func (s *Server) leaveAdmin() {
	s.admins.Add(-1)
	s.stats.SessionsActive.Add(-1)
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
	case clientGone(err):
		return
	case wire.IsInterrupted(err) && pgerr.SQLState(err) == "":
		// PostgreSQL ends a start-up that outlasts authentication_timeout without a word.
		// Only the client's socket has that deadline: an error with a SQLSTATE (a lease
		// step's or the upstream's deadline, say) is the client's to hear as it is.
		err = &quietError{fmt.Errorf("client did not complete start-up within %s", s.cfg.StartupTimeout)}
	}
	var old *oldProtocolError
	if errors.As(err, &old) {
		s.log.Info("connection refused", zap.String("message", old.msg), zap.Stringer("client", cc.raw.RemoteAddr()))
		_ = conn.SetWriteDeadline(time.Now().Add(wire.GoodbyeWriteTimeout))
		if _, err := conn.Write(old.message()); err == nil {
			wire.LingeringClose(conn)
		}
		return
	}
	var quiet *quietError
	if errors.As(err, &quiet) || (pgerr.SQLState(err) == "" && isNetError(err)) {
		s.log.Debug("connection failed", zap.Error(err), zap.Stringer("client", cc.raw.RemoteAddr()))
		return // the channel to the client is what broke: nobody to tell
	}
	resp := wire.ErrorResponse("FATAL", err)
	s.stats.Error(resp.Code)
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

// clientGone reports whether err is the client's stream ending (the client went away):
// an error that carries a SQLSTATE is the provider's or the upstream's, even when its
// cause is an upstream socket's EOF, and is the client's to hear.
func clientGone(err error) bool {
	if pgerr.SQLState(err) != "" {
		return false
	}
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, net.ErrClosed)
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
	s.guard.At("cancel forwarder")
	ctx, cancel := context.WithTimeout(s.baseCtx, wire.CancelTimeout)
	defer cancel()
	if err := t.Send(ctx); err != nil {
		s.log.Warn("forward cancel request", zap.Error(err))
	}
}
