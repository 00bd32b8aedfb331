package txmode

import (
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/jackc/pgerrcode"
	"github.com/jackc/pgx/v5/pgproto3"
	"go.uber.org/zap"

	"github.com/pgtestproxy/pgtestproxy/internal/pgerr"
	"github.com/pgtestproxy/pgtestproxy/proxy/internal/wire"
)

// Connections sharing a session key take turns on the lease's backend, and a client
// transaction block holds it until it ends. A connection whose block waits for another
// connection of the key (for a lock the other would take, or for the other's next
// statement) therefore waits forever where a plain server would either run the other
// or detect the deadlock. The proxy cannot check for a deadlock as the server does
// (it cannot see what the holder's client waits for), so it waits longer before it
// decides: when a session has waited for its turn for deadlockFactor times the
// backend's deadlock_timeout (read when the backend first opened the clone; 1s, the
// server's default, when it cannot be read) while the holder sent nothing and nothing
// of anyone's was pending (the holder's block is idle: its client waits), the holder
// is the deadlock's victim: its client gets FATAL 40P01 and its session ends, as a
// plain server ends a session whose block idles past
// idle_in_transaction_session_timeout (idle.go); its block is rolled back and the
// waiters go on. The holder is the one connection every waiter waits for, so ending
// it resolves the deadlock with one victim, where failing the waiters would fail
// every connection of the key that happened to be waiting (pgx's suite on one key:
// 69 tests of other packages failed with 40P01 behind one test whose block waited for
// its own second connection). A block that is merely slow between two statements for
// that long, while another connection of the key waits, is taken for a deadlock too.
// A holder whose client is not between messages (it sent part of one) is not ended:
// the waiter gets 40P01 for the statement it waited to send instead.

// deadlockFactor is how many of the server's deadlock_timeout a holder's idle block
// must last before a waiting session of its key is refused with 40P01.
const deadlockFactor = 10

// defaultDeadlockTimeout is PostgreSQL's default deadlock_timeout.
const defaultDeadlockTimeout = time.Second

// sqlDeadlockTimeout reads the server's deadlock_timeout, in milliseconds.
const sqlDeadlockTimeout = "SELECT setting FROM pg_catalog.pg_settings WHERE name = 'deadlock_timeout'"

// parseDeadlockTimeout reads sqlDeadlockTimeout's row.
func parseDeadlockTimeout(row []string) time.Duration {
	if len(row) == 1 {
		if ms, err := strconv.Atoi(row[0]); err == nil && ms > 0 {
			return time.Duration(ms) * time.Millisecond
		}
	}
	return defaultDeadlockTimeout
}

// deadlockWait is deadlockFactor times the backend's deadlock_timeout, or the default.
func (b *Backend) deadlockWait() time.Duration {
	if b.deadlockTimeout > 0 {
		return deadlockFactor * b.deadlockTimeout
	}
	return deadlockFactor * defaultDeadlockTimeout
}

// deadlockError is what acquire fails with when it detected a deadlock.
type deadlockError struct{ err *pgerr.Error }

func (e *deadlockError) Error() string { return e.err.Error() }

// deadlockWatch times a session's wait for its turn. Its fields are under c.mu.
type deadlockWatch struct {
	timer *time.Timer
	due   bool // a deadlock_timeout passed since mark
	mark  int  // messages queued and answered when the period began
}

// watchDeadlock starts timing a wait for the turn. c.mu is held.
func (c *txConn) watchDeadlock() *deadlockWatch {
	w := &deadlockWatch{mark: c.q.pushed + c.q.popped}
	w.timer = time.AfterFunc(c.be.deadlockWait(), func() {
		c.mu.Lock()
		defer c.mu.Unlock()
		w.due = true
		c.turn.Broadcast()
	})
	return w
}

// deadlocked reports, once a period passed, whether s's wait is a deadlock: nothing
// was queued or answered in it and nothing is pending, so the holder's block is idle.
// Otherwise a new period begins. A nil w (a session leaving) never deadlocks. c.mu is
// held.
func (c *txConn) deadlocked(s *Session, w *deadlockWatch) error {
	if w == nil || !w.due {
		return nil
	}
	now := c.q.pushed + c.q.popped
	if now != w.mark || c.q.len() > 0 || c.holder == nil || c.holder == s {
		w.due, w.mark = false, now
		w.timer.Reset(c.be.deadlockWait())
		return nil
	}
	h := c.holder
	if h.idle.Load() && !h.left {
		if !h.deadlockEnded {
			h.deadlockEnded = true
			go h.endIdle(c.deadlockFatal(s))
		}
		w.due, w.mark = false, now
		w.timer.Reset(c.be.deadlockWait())
		return nil
	}
	return &deadlockError{&pgerr.Error{Code: pgerrcode.DeadlockDetected, Message: "deadlock detected",
		Detail: fmt.Sprintf("This connection waited %s for its turn on the backend its session key's connections share; "+
			"another connection of the key (client %s) holds it with a transaction block that was idle all that time, "+
			"so that connection is waiting for this one.", c.be.deadlockWait(), clientAddr(h)),
		Hint: deadlockHint}}
}

// deadlockHint is the advice of both deadlock errors.
const deadlockHint = "Connections sharing a tx-mode session key take turns on one backend, and a transaction block holds it until " +
	"it ends: end the block before waiting for another connection of the key, or give them different session keys (or use mode=db)."

// deadlockFatal is what ends the holder of a deadlocked backend; waiter is the
// session that waited. c.mu is held.
func (c *txConn) deadlockFatal(waiter *Session) *pgproto3.ErrorResponse {
	return wire.ErrorResponse("FATAL", &pgerr.Error{Code: pgerrcode.DeadlockDetected,
		Message: "terminating connection due to a deadlock with another connection of its tx-mode session key",
		Detail: fmt.Sprintf("This connection's transaction block held the backend its session key's connections share, idle for %s, "+
			"while another connection of the key (client %s) waited for its turn; the block was rolled back so that the others can go on.",
			c.be.deadlockWait(), clientAddr(waiter)),
		Hint: deadlockHint})
}

// clientAddr names a session's client in a message.
func clientAddr(s *Session) string {
	if s == nil || s.client == nil {
		return "?"
	}
	return s.client.RemoteAddr().String()
}

// failDeadlocked answers the client's request that waited for its turn with the
// deadlock error, as a plain server fails a statement: a Query, FunctionCall or Sync
// gets ReadyForQuery after it; in the extended protocol the messages up to the next
// Sync are then skipped (discard).
func (c *txClient) failDeadlocked(typ byte, e *deadlockError) error {
	c.cn.log.Debug("tx session deadlocked", zap.Error(e))
	c.cn.stats.Error(e.err.Code)
	c.s.toClient(wire.ErrorResponse("ERROR", e.err))
	switch typ {
	case 'Q', 'F', 'S':
		c.s.toClient(&pgproto3.ReadyForQuery{TxStatus: 'I'})
	default:
		c.discarding = true
	}
	c.s.flushClient()
	return nil
}

// discard skips a client message after a failed extended-protocol message, up to the
// Sync, which gets ReadyForQuery.
func (c *txClient) discard(typ byte, n int) error {
	if typ == 'X' {
		return errClientDone
	}
	if err := c.s.crd.skip(n); err != nil {
		return c.readFailed(err)
	}
	if typ == 'S' {
		c.discarding = false
		c.s.toClient(&pgproto3.ReadyForQuery{TxStatus: 'I'})
		c.s.flushClient()
	}
	return nil
}

// asDeadlock returns err's deadlockError, if it is one.
func asDeadlock(err error) (*deadlockError, bool) {
	if err == nil { // every message's outcome: errors.As would allocate e
		return nil, false
	}
	var e *deadlockError
	ok := errors.As(err, &e)
	return e, ok
}
