package txmode

import (
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/pgtestproxy/pgtestproxy/internal/sqllex"
)

// LISTEN, UNLISTEN and NOTIFY. The server runs them as the client wrote them, inside
// the proxy's transaction, so that it checks them and answers them as it would; but
// that transaction never commits, so the server never delivers a notification. The
// proxy carries them out itself: each one the server completes is noted (onReply),
// and when the unit or block it ran in commits in the client's view (the end of an
// autocommit unit, or the release of the proxy's savepoint at the client's COMMIT)
// the LISTENs and UNLISTENs change the channel sets the proxy keeps per session, and
// each notification, once per channel and payload as PostgreSQL folds them, goes to
// every session of the backend that listens on its channel, with the backend's PID.
// A rollback (ROLLBACK, a failed COMMIT, a failed autocommit unit) drops them; so
// does ROLLBACK TO one of the client's savepoints for those noted since it was set,
// for which the client's SAVEPOINT, RELEASE and ROLLBACK TO are noted too.

// chanOp is a client's LISTEN, UNLISTEN or NOTIFY, or one of its SAVEPOINT, RELEASE
// and ROLLBACK TO, which mark where a rollback to a savepoint cuts the notes.
type chanOp struct {
	kind    sqllex.Kind // Listen, Unlisten, Notify, Savepoint, Release or RollbackTo
	channel string      // the channel ("" for UNLISTEN *), or the savepoint
	payload string
}

// newChanOp returns the chanOp st is, or nil when it is none.
func newChanOp(st *sqllex.Statement) *chanOp {
	switch st.Kind {
	case sqllex.Listen, sqllex.Unlisten, sqllex.Notify, sqllex.Savepoint, sqllex.Release, sqllex.RollbackTo:
		return &chanOp{kind: st.Kind, channel: st.Name.Name, payload: st.Literal}
	}
	return pgNotifyOp(st)
}

// chanNote is a chanOp the server completed for session s in the unit or block that
// runs now.
type chanNote struct {
	s  *Session
	op *chanOp
}

// notification is a NotificationResponse for a session.
type notification struct {
	to  *Session
	msg *pgproto3.NotificationResponse
}

// noteLocked notes op, completed for s (nil: a session gone, whose LISTEN no longer
// matters).
func (c *txConn) noteLocked(s *Session, op *chanOp) {
	switch {
	case op == nil || s == nil && op.kind == sqllex.Listen || s == nil && op.kind == sqllex.Unlisten:
	case op.kind == sqllex.RollbackTo:
		// The savepoint stays set; what came after it is undone, nested savepoints too.
		if i := c.savepointLocked(op.channel); i >= 0 {
			c.notes = c.notes[:i+1]
		}
	case op.kind == sqllex.Release:
		// What came after it merges into the enclosing level; nested savepoints end too.
		if i := c.savepointLocked(op.channel); i >= 0 {
			kept := c.notes[:i]
			for _, n := range c.notes[i+1:] {
				if n.op.kind != sqllex.Savepoint {
					kept = append(kept, n)
				}
			}
			c.notes = kept
		}
	default:
		c.notes = append(c.notes, chanNote{s: s, op: op})
	}
}

// savepointLocked returns the index of the note of the newest savepoint name, or -1.
func (c *txConn) savepointLocked(name string) int {
	for i := len(c.notes) - 1; i >= 0; i-- {
		if op := c.notes[i].op; op.kind == sqllex.Savepoint && op.channel == name {
			return i
		}
	}
	return -1
}

// applyLocked applies e to the server's state. A release of the proxy's savepoint
// commits what the notes say and returns the notifications to send; a rollback to it
// drops the notes.
func (c *txConn) applyLocked(e effect) []notification {
	c.st.apply(e)
	switch e {
	case effReleased:
		return c.commitNotesLocked()
	case effEnded, effChained, effAbandon:
		// effChained after a release (COMMIT AND CHAIN) finds the notes committed.
		c.notes = nil
	}
	return nil
}

// commitNotesLocked carries out the notes of a unit or block that committed in the
// client's view: LISTEN and UNLISTEN first, in order, then the notifications, each
// distinct channel and payload once, to the sessions listening on the channel.
func (c *txConn) commitNotesLocked() []notification {
	if len(c.notes) == 0 {
		return nil
	}
	notes := c.notes
	c.notes = nil
	for _, n := range notes {
		switch {
		case n.op.kind == sqllex.Listen:
			if n.s.channels == nil {
				n.s.channels = make(map[string]struct{})
			}
			n.s.channels[n.op.channel] = struct{}{}
		case n.op.kind == sqllex.Unlisten && n.op.channel == "":
			n.s.channels = nil
		case n.op.kind == sqllex.Unlisten:
			delete(n.s.channels, n.op.channel)
		}
	}
	var out []notification
	seen := make(map[chanOp]struct{})
	pid := c.be.cancel.PID()
	for _, n := range notes {
		if n.op.kind != sqllex.Notify {
			continue
		}
		if _, dup := seen[*n.op]; dup {
			continue
		}
		seen[*n.op] = struct{}{}
		msg := &pgproto3.NotificationResponse{PID: pid, Channel: n.op.channel, Payload: n.op.payload}
		for _, s := range c.sessions {
			if _, ok := s.channels[n.op.channel]; ok {
				out = append(out, notification{to: s, msg: msg})
			}
		}
	}
	return out
}

// deliver writes notifications to their sessions' clients, each between two
// messages; the server pump flushes them with its next replies or when it waits.
func deliver(out []notification) {
	for _, n := range out {
		n.to.toClient(n.msg)
	}
}
