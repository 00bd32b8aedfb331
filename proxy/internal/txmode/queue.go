package txmode

// pending is one message the proxy sent to the server in a tx-mode session that the
// server answers (Flush and copy data are not queued): what the replies are and what
// to do with them.
type pending struct {
	owner    *Session // whose message it is (nil: the proxy's, for a session gone)
	msg      byte     // 'P','B','D','E','C','S','Q','F': the frontend message sent
	role     role
	tag      string // roleCarrier: the client statement's command tag
	ok, fail effect // applied to the session's txState on completion or error
	raise    bool   // its error or notice was raised by the proxy's DO block
	check    bool   // sqlCheckDeferred: its errors and notices lose the proxy's context
	probe    bool   // sqlHasDeferrable: its row sets the backend's deferrable flag
	quiet    bool   // its notices are the proxy's
	idle     bool   // sqlIdleGuard: its row is the client's timeout (idle.go)
	path     bool   // sqlPathRead: its row is the session's search_path (ownpath.go)
	hint     bool   // a 25001 error gets the mode=db hint
	work     bool   // 'S','Q','F': the unit this message ends ran SQL
	recovery bool   // part of the proxy's recovery after a failed autocommit unit
	plan     *queryPlan
	prefix   bool    // a savepoint statement of the proxy's that opens a unit
	ch       *chanOp // a client's LISTEN, UNLISTEN or NOTIFY, noted when it completes
}

// unitEnd reports whether the server answers the message with ReadyForQuery.
func (p *pending) unitEnd() bool { return p.msg == 'S' || p.msg == 'Q' || p.msg == 'F' }

// extended reports whether an error in answer to the message makes the server skip
// everything up to the next Sync.
func (p *pending) extended() bool {
	switch p.msg {
	case 'P', 'B', 'D', 'E', 'C':
		return true
	}
	return false
}

// current returns the role, tag and effects that apply to the reply arriving now: the
// entry's own, or those of the current statement of a rewritten Query.
func (p *pending) current() planStmt {
	if p.plan != nil {
		return *p.plan.stmt()
	}
	return planStmt{role: p.role, tag: p.tag, ok: p.ok, fail: p.fail, raise: p.raise, check: p.check, probe: p.probe,
		quiet: p.quiet, ch: p.ch, idle: p.idle, path: p.path}
}

// completes reports whether typ is the reply that completes message msg (errors aside).
func completes(msg, typ byte) bool {
	switch msg {
	case 'P':
		return typ == '1' // ParseComplete
	case 'B':
		return typ == '2' // BindComplete
	case 'C':
		return typ == '3' // CloseComplete
	case 'D':
		return typ == 'n' || typ == 'T' // NoData, RowDescription
	case 'E':
		return typ == 'C' || typ == 'I' || typ == 's' // CommandComplete, EmptyQueryResponse, PortalSuspended
	}
	return false
}

// guarded reports whether a CancelRequest could hit a statement of the proxy's while
// the message is pending: it is one, or a Query with one in its plan.
func (p *pending) guarded() bool {
	if p.role == roleInfra {
		return true
	}
	if p.plan != nil {
		for _, ps := range p.plan.stmts {
			if ps.role == roleInfra {
				return true
			}
		}
	}
	return false
}

// replyQueue holds the pending messages in the order they were sent.
type replyQueue struct {
	items  []pending
	head   int
	pushed int // messages queued so far
	popped int // messages answered (or skipped) so far
	syncs  int // Sync messages queued
	guards int // guarded messages queued
	// prefixes: guarded messages queued that open a unit; while all guarded messages
	// are those, a watch of the backend can tell when the client's statement runs.
	prefixes int
}

func (q *replyQueue) push(p pending) {
	if p.msg == 'S' {
		q.syncs++
	}
	if p.guarded() {
		q.guards++
		if p.prefix {
			q.prefixes++
		}
	}
	q.items = append(q.items, p)
	q.pushed++
}

func (q *replyQueue) len() int { return len(q.items) - q.head }

// front returns the oldest pending message, or nil. The pointer is valid until the
// next push.
func (q *replyQueue) front() *pending {
	if q.head == len(q.items) {
		return nil
	}
	return &q.items[q.head]
}

func (q *replyQueue) pop() {
	if q.items[q.head].msg == 'S' {
		q.syncs--
	}
	if q.items[q.head].guarded() {
		q.guards--
		if q.items[q.head].prefix {
			q.prefixes--
		}
	}
	q.items[q.head] = pending{}
	q.head++
	q.popped++
	switch {
	case q.head == len(q.items):
		q.items, q.head = q.items[:0], 0
	case q.head >= 1024 && 2*q.head >= len(q.items):
		n := copy(q.items, q.items[q.head:])
		clear(q.items[n:])
		q.items, q.head = q.items[:n], 0
	}
}
