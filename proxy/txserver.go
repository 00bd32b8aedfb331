package proxy

import (
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5/pgproto3"
)

// errBackendGone ends a session whose backend reported a FATAL error or closed.
var errBackendGone = errors.New("backend connection ended")

// serverPump reads what the server sends and gives the client what is its: replies to
// the client's own messages as they are, the client-visible parts of the proxy's
// rewrites re-tagged, nothing of the proxy's bookkeeping; it recovers failed
// autocommit units before the client sees their ReadyForQuery.
func (s *txSession) serverPump() error {
	for {
		if !s.be.rd.buffered() {
			s.flushClient()
		}
		typ, n, err := s.be.rd.header()
		if err != nil {
			return s.serverStopped(err, true)
		}
		s.srv.stats.bytesOut.Add(int64(n + 5))
		if err := s.onServer(typ, n); err != nil {
			return s.serverStopped(err, false)
		}
	}
}

// serverStopped says why reading from the server ended: errStopped when the session
// stopped it between two messages (atHeader, with nothing of the next one read).
func (s *txSession) serverStopped(err error, atHeader bool) error {
	s.mu.Lock()
	stopping := s.stopping && s.failure == nil
	s.mu.Unlock()
	if stopping && atHeader && isInterrupted(err) && !s.be.rd.buffered() {
		return errStopped
	}
	if s.failed() == nil {
		s.fail(fmt.Errorf("read from backend: %w", err))
	}
	return err
}

func (s *txSession) onServer(typ byte, n int) error {
	switch typ {
	case 'S': // ParameterStatus
		body, err := s.be.rd.body(typ, n)
		if err != nil {
			return err
		}
		s.be.noteParam(body)
		s.toClientRaw(typ, body)
		return nil
	case 'A': // NotificationResponse
		return s.toClientStream(typ, n)
	case 'N':
		return s.onNotice(n)
	case 'E':
		return s.onError(n)
	case 'Z':
		return s.onReady(n)
	}
	return s.onReply(typ, n)
}

// onReply handles every reply but errors and ReadyForQuery.
func (s *txSession) onReply(typ byte, n int) error {
	s.mu.Lock()
	p := s.q.front()
	var cur planStmt
	if p != nil {
		cur = p.current()
	}
	s.mu.Unlock()
	if p == nil {
		return s.lost("unexpected message from the server", fmt.Errorf("message type %q with nothing pending", typ))
	}
	var err error
	switch {
	case cur.role == roleClient:
		err = s.toClientStream(typ, n)
	case typ == 'C' && cur.role == roleCarrier:
		if err = s.be.rd.skip(n); err == nil {
			s.toClient(&pgproto3.CommandComplete{CommandTag: []byte(cur.tag)})
		}
	default:
		err = s.be.rd.skip(n)
	}
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	switch typ {
	case 'G': // CopyInResponse
		s.copyIn = true
		s.changed.Broadcast()
	case 'C':
		s.copyIn = false
	}
	p = s.q.front()
	switch {
	case p.msg == 'Q':
		if typ == 'C' || typ == 'I' {
			s.st.apply(cur.ok)
			if p.plan != nil {
				p.plan.cur++
			}
		}
	case completes(p.msg, typ):
		s.st.apply(cur.ok)
		if typ == '1' && p.prep != nil {
			p.prep.setReady(p.prepGen)
		}
		s.popLocked()
	}
	return nil
}

func (s *txSession) onNotice(n int) error {
	s.mu.Lock()
	var cur planStmt
	if p := s.q.front(); p != nil {
		cur = p.current()
	}
	s.mu.Unlock()
	switch {
	case cur.role == roleInfra:
		return s.be.rd.skip(n)
	case !cur.raise:
		return s.toClientStream('N', n)
	}
	body, err := s.be.rd.body('N', n)
	if err != nil {
		return err
	}
	var m pgproto3.NoticeResponse
	if err := (&m).Decode(body); err != nil {
		return s.lost("decode a notice", err)
	}
	stripRaise((*pgproto3.ErrorResponse)(&m))
	s.toClient(&m)
	return nil
}

// onError handles an ErrorResponse: the client's, or one of a rewrite, which the
// client gets as its statement's; an error of the proxy's own ends the session.
func (s *txSession) onError(n int) error {
	body, err := s.be.rd.body('E', n)
	if err != nil {
		return err
	}
	var e pgproto3.ErrorResponse
	if err := e.Decode(body); err != nil {
		return s.lost("decode an error", err)
	}
	if e.Severity == "FATAL" || e.Severity == "PANIC" {
		s.toClient(&e)
		s.flushClient()
		return errBackendGone
	}
	s.mu.Lock()
	p := s.q.front()
	if p == nil {
		s.mu.Unlock()
		return s.lost("unexpected error from the server", pgErr(&e))
	}
	s.copyIn = false
	cur := p.current()
	if cur.role == roleInfra && !(p.recovery && e.Code == "57014") {
		s.mu.Unlock()
		return s.lost("a statement of the proxy failed", pgErr(&e))
	}
	s.retry = s.retry || p.recovery
	s.st.apply(cur.fail)
	top := !s.st.block && s.st.sp == spNone
	if p.hint && e.Code == "25001" && e.Hint == "" {
		e.Hint = hintModeDB
	}
	if p.plan != nil {
		e.Position = p.plan.mapPosition(e.Position)
	}
	if p.extended() {
		s.popLocked()
		s.skipping = true
		s.changed.Broadcast()
	}
	s.mu.Unlock()
	if top {
		return s.lost("an error at the top level of the proxy's transaction", pgErr(&e))
	}
	if cur.role != roleInfra {
		if cur.raise {
			stripRaise(&e)
		}
		s.toClient(&e)
	}
	return nil
}

// onReady handles ReadyForQuery: the end of a unit, of the messages skipped after an
// error, or of the proxy's recovery.
func (s *txSession) onReady(n int) error {
	body, err := s.be.rd.body('Z', n)
	if err != nil {
		return err
	}
	if len(body) != 1 {
		return s.lost("invalid ReadyForQuery", fmt.Errorf("%d bytes", len(body)))
	}
	status := body[0]
	s.mu.Lock()
	if s.skipping {
		for p := s.q.front(); p != nil && p.msg != 'S'; p = s.q.front() {
			if p.unitEnd() {
				s.unitsDone++
			}
			s.popLocked()
		}
		s.skipping = false
	}
	p := s.q.front()
	if p == nil || !p.unitEnd() {
		s.mu.Unlock()
		return s.lost("ReadyForQuery out of place", fmt.Errorf("status %q", status))
	}
	s.st.status = status
	if p.recovery {
		return s.recovered(status)
	}
	if !s.st.block && status == 'E' {
		return s.recoverLocked()
	}
	if !s.st.block && p.work && s.st.sp != spNone {
		s.st.sp = spDirty
	}
	s.popLocked()
	s.unitsDone++
	s.changed.Broadcast()
	rfq := &pgproto3.ReadyForQuery{TxStatus: s.st.clientStatus(status)}
	s.mu.Unlock()
	s.toClient(rfq)
	return nil
}

// popLocked removes the front of the queue, and hands a held CancelRequest on once
// none of the proxy's statements is pending.
func (s *txSession) popLocked() {
	s.q.pop()
	switch {
	case s.q.len() == 0:
		s.cancelled = false
		s.changed.Broadcast()
	case s.cancelled && s.q.guards == 0:
		s.cancelled = false
		s.deliverLater()
	}
}

// stripRaise removes from what the proxy's DO block raised the PL/pgSQL context and
// source location, which a plain server's own message does not have.
func stripRaise(e *pgproto3.ErrorResponse) {
	e.Where, e.File, e.Line, e.Routine = "", "", 0, ""
}

// pgErr turns an ErrorResponse into an error for logs and FATAL messages.
func pgErr(e *pgproto3.ErrorResponse) error {
	return fmt.Errorf("%s: %s (SQLSTATE %s)", e.Severity, e.Message, e.Code)
}
