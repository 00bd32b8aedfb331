package txmode

import (
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgerrcode"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/pgtestproxy/pgtestproxy/proxy/internal/wire"
)

// errBackendGone ends a session whose backend reported a FATAL error or closed.
var errBackendGone = errors.New("backend connection ended")

// serverPump reads what the server sends and gives the client what is its: replies to
// the client's own messages as they are, the client-visible parts of the proxy's
// rewrites re-tagged, nothing of the proxy's bookkeeping; it recovers failed
// autocommit units before the client sees their ReadyForQuery.
func (c *txConn) serverPump() error {
	if err := c.pumpStart(); err != nil {
		return c.serverStopped(err, true)
	}
	for {
		if !c.be.rd.buffered() {
			c.flushClients()
		}
		typ, n, err := c.be.rd.header()
		if err != nil {
			return c.serverStopped(err, true)
		}
		c.stats.BytesOut.Add(int64(n + 5))
		c.guard.At("tx server pump")
		if err := c.onServer(typ, n); err != nil {
			return c.serverStopped(err, false)
		}
	}
}

// serverStopped says why reading from the server ended: errStopped when the session
// stopped it between two messages (atHeader, with nothing of the next one read).
func (c *txConn) serverStopped(err error, atHeader bool) error {
	c.mu.Lock()
	stopping := c.stopping && c.failure == nil
	c.mu.Unlock()
	if stopping && atHeader && wire.IsInterrupted(err) && !c.be.rd.buffered() {
		return errStopped
	}
	if c.failed() == nil {
		c.fail(fmt.Errorf("read from backend: %w", err))
	}
	return err
}

func (c *txConn) onServer(typ byte, n int) error {
	switch typ {
	case 'S': // ParameterStatus
		body, err := c.be.rd.body(typ, n)
		if err != nil {
			return err
		}
		c.be.noteParam(body)
		owner := c.current().owner
		owner.toClientRaw(typ, body)
		owner.noteOwn(body)
		return nil
	case 'A': // NotificationResponse
		return c.forward(c.current().owner, typ, n)
	case 'N':
		return c.onNotice(n)
	case 'E':
		return c.onError(n)
	case 'Z':
		return c.onReady(n)
	}
	return c.onReply(typ, n)
}

// onReply handles every reply but errors and ReadyForQuery.
func (c *txConn) onReply(typ byte, n int) error {
	c.mu.Lock()
	p := c.q.front()
	var cur planStmt
	var owner *Session
	if p != nil {
		cur, owner = p.current(), p.owner
	}
	c.mu.Unlock()
	if p == nil {
		return c.lost("unexpected message from the server", fmt.Errorf("message type %q with nothing pending", typ))
	}
	var err error
	switch {
	case typ == 'C' && p.plan != nil && cur.role != rolePart && cur.role != roleInfra && p.plan.holds():
		err = c.holdTag(p.plan, cur, n)
	case cur.role == roleClient:
		err = c.forward(owner, typ, n)
	case typ == 'C' && cur.role == roleCarrier:
		if err = c.be.rd.skip(n); err == nil {
			owner.toClient(&pgproto3.CommandComplete{CommandTag: []byte(cur.tag)})
		}
	case typ == 'D' && cur.idle:
		var body []byte
		if body, err = c.be.rd.body(typ, n); err == nil {
			c.noteIdle(owner, dataRow(body))
		}
	case typ == 'D' && cur.path:
		var body []byte
		if body, err = c.be.rd.body(typ, n); err == nil {
			c.notePathRow(owner, dataRow(body))
		}
	case typ == 'D' && cur.probe:
		var body []byte
		if body, err = c.be.rd.body(typ, n); err == nil {
			row := dataRow(body)
			c.be.learned(len(row) != 1 || row[0] != "f")
		}
	case typ == 'C' && p.plan != nil && p.plan.held != nil && p.plan.cur == p.plan.releaseIdx:
		if err = c.be.rd.skip(n); err == nil {
			owner.toClient(p.plan.held)
			p.plan.held = nil
		}
	default:
		err = c.be.rd.skip(n)
	}
	if err != nil {
		return err
	}
	var out []notification
	defer func() { deliver(out) }()
	c.mu.Lock()
	defer c.mu.Unlock()
	switch typ {
	case 'G': // CopyInResponse
		c.copyIn = true
		c.changed.Broadcast()
	case 'C':
		c.copyIn = false
	}
	p = c.q.front()
	switch {
	case p.msg == 'Q':
		if typ == 'C' || typ == 'I' {
			if typ == 'C' {
				c.noteLocked(p.owner, cur.ch)
			}
			out = c.applyLocked(cur.ok)
			if p.plan != nil {
				p.plan.cur++
			}
		}
	case completes(p.msg, typ):
		if typ == 'C' {
			c.noteLocked(p.owner, cur.ch)
		}
		out = c.applyLocked(cur.ok)
		c.popLocked()
	}
	return nil
}

// holdTag keeps the CommandComplete of the last client statement of a query string
// until the deferred check after it is done.
func (c *txConn) holdTag(plan *queryPlan, cur planStmt, n int) error {
	body, err := c.be.rd.body('C', n)
	if err != nil {
		return err
	}
	tag := cur.tag
	if cur.role == roleClient {
		tag, _, _ = cstring(body)
	}
	plan.held = &pgproto3.CommandComplete{CommandTag: []byte(tag)}
	return nil
}

func (c *txConn) onNotice(n int) error {
	at := c.current()
	cur := at.stmt
	switch {
	case cur.role == roleInfra || cur.quiet:
		return c.be.rd.skip(n)
	case !cur.raise && !cur.check:
		return c.forward(at.owner, 'N', n)
	}
	body, err := c.be.rd.body('N', n)
	if err != nil {
		return err
	}
	var m pgproto3.NoticeResponse
	if err := (&m).Decode(body); err != nil {
		return c.lost("decode a notice", err)
	}
	stripProxy((*pgproto3.ErrorResponse)(&m), cur)
	at.owner.toClient(&m)
	return nil
}

// onError handles an ErrorResponse: the client's, or one of a rewrite, which the
// client gets as its statement's; an error of the proxy's own ends the session.
func (c *txConn) onError(n int) error {
	body, err := c.be.rd.body('E', n)
	if err != nil {
		return err
	}
	var e pgproto3.ErrorResponse
	if err := e.Decode(body); err != nil {
		return c.lost("decode an error", err)
	}
	if e.Severity == "FATAL" || e.Severity == "PANIC" {
		c.doomed.Store(true)
		for _, s := range c.attached() {
			s.toClientFinal(&e)
		}
		c.flushClients()
		return errBackendGone
	}
	c.mu.Lock()
	p := c.q.front()
	if p == nil {
		c.mu.Unlock()
		return c.lost("unexpected error from the server", pgErr(&e))
	}
	c.copyIn = false
	cur, owner := p.current(), p.owner
	if cur.role == roleInfra && !(p.recovery && e.Code == pgerrcode.QueryCanceled) {
		c.mu.Unlock()
		return c.lost("a statement of the proxy failed", pgErr(&e))
	}
	c.retry = c.retry || p.recovery
	out := c.applyLocked(cur.fail)
	top := !c.st.block && c.st.sp == spNone
	if p.hint && e.Code == pgerrcode.ActiveSQLTransaction && e.Hint == "" {
		e.Hint = hintModeDB
	}
	if p.plan != nil {
		p.plan.endOfInput(&e)
		p.plan.held = nil
		e.Position = p.plan.mapPosition(e.Position)
	}
	if owner != nil && owner.names != nil {
		e.Message = owner.names.unmap(e.Message)
	}
	if p.extended() {
		c.popLocked()
		c.skipping = true
		c.changed.Broadcast()
	}
	c.mu.Unlock()
	deliver(out) // none: a failure never releases the savepoint
	if top {
		return c.lost("an error at the top level of the proxy's transaction", pgErr(&e))
	}
	if cur.role != roleInfra {
		stripProxy(&e, cur)
		owner.toClient(&e)
	}
	return nil
}

// onReady handles ReadyForQuery: the end of a unit, of the messages skipped after an
// error, or of the proxy's recovery.
func (c *txConn) onReady(n int) error {
	body, err := c.be.rd.body('Z', n)
	if err != nil {
		return err
	}
	if len(body) != 1 {
		return c.lost("invalid ReadyForQuery", fmt.Errorf("%d bytes", len(body)))
	}
	status := body[0]
	c.mu.Lock()
	if c.skipping {
		for p := c.q.front(); p != nil && p.msg != 'S'; p = c.q.front() {
			if p.unitEnd() {
				c.unitsDone++
			}
			c.popLocked()
		}
		c.skipping = false
	}
	p := c.q.front()
	if p == nil || !p.unitEnd() {
		c.mu.Unlock()
		return c.lost("ReadyForQuery out of place", fmt.Errorf("status %q", status))
	}
	c.st.status = status
	if p.recovery {
		return c.recovered(status)
	}
	if !c.st.block && status == 'E' {
		c.notes = nil // the failed unit is rolled back
		return c.recoverLocked()
	}
	var out []notification
	if !c.st.block {
		out = c.commitNotesLocked() // the autocommit unit commits
	}
	if !c.st.block && p.work && c.st.sp != spNone {
		c.st.sp = spDirty
	}
	owner := p.owner
	c.popLocked()
	c.unitsDone++
	c.changed.Broadcast()
	rfq := &pgproto3.ReadyForQuery{TxStatus: c.st.clientStatus(status)}
	c.idleReadyLocked(owner, rfq.TxStatus)
	c.mu.Unlock()
	deliver(out)
	owner.toClient(rfq)
	return nil
}

// popLocked removes the front of the queue, and hands a held CancelRequest on once
// none of the proxy's statements is pending, if its session's statement still runs.
func (c *txConn) popLocked() {
	c.q.pop()
	front := c.q.front()
	switch {
	case front == nil:
		c.held = nil
		c.changed.Broadcast()
	case c.held != nil && front.owner != c.held:
		c.held = nil
	case c.held != nil && c.q.guards == 0:
		c.held = nil
		c.deliverLater()
	}
}

// replyTo is the pending message replies are for now, and its session.
type replyTo struct {
	stmt  planStmt
	owner *Session
}

// current returns what the reply arriving now belongs to: the front of the queue, or,
// with nothing pending, the session whose turn it is.
func (c *txConn) current() replyTo {
	c.mu.Lock()
	defer c.mu.Unlock()
	if p := c.q.front(); p != nil {
		return replyTo{stmt: p.current(), owner: p.owner}
	}
	return replyTo{stmt: planStmt{role: roleClient}, owner: c.holder}
}

// attached returns the sessions attached now.
func (c *txConn) attached() []*Session {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]*Session(nil), c.sessions...)
}

// forward streams a server message to owner, or skips it when there is none.
func (c *txConn) forward(owner *Session, typ byte, n int) error {
	if owner == nil {
		return c.be.rd.skip(n)
	}
	return owner.toClientStream(c.be.rd, typ, n)
}

// flushClients sends the clients what the server pump wrote for them.
func (c *txConn) flushClients() {
	for _, s := range c.attached() {
		s.flushClient()
	}
}

// stripProxy removes from an error or notice of a statement of the proxy's what a
// plain server's own message does not have: from what the proxy's DO block raised, the
// PL/pgSQL context and source location; from what its deferred check raised, the
// context of the check.
func stripProxy(e *pgproto3.ErrorResponse, cur planStmt) {
	switch {
	case cur.raise:
		e.Where, e.File, e.Line, e.Routine = "", "", 0, ""
	case cur.check:
		if i := strings.Index(e.Where, checkContext); i >= 0 {
			e.Where = strings.TrimSuffix(e.Where[:i], "\n")
		}
	}
}

// pgErr turns an ErrorResponse into an error for logs and FATAL messages.
func pgErr(e *pgproto3.ErrorResponse) error {
	return fmt.Errorf("%s: %s (SQLSTATE %s)", e.Severity, e.Message, e.Code)
}
