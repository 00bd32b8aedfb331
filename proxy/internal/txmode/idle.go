package txmode

import (
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgerrcode"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/pgtestproxy/pgtestproxy/internal/sqllex"
	"github.com/pgtestproxy/pgtestproxy/proxy/internal/wire"
)

// The client's own idle_in_transaction_session_timeout.
//
// The proxy's transaction is idle in a transaction between any two units, so the
// server must hold 0 whenever it waits for a message; but the client's value (from
// its startup packet, the server's configuration, or its own SET) must read back, and
// apply to its block, as on a plain server. The server arms the timeout only when it
// sends ReadyForQuery, with the value then in effect. So, once the lease's client
// value may be other than 0 (Backend.idleOwn: learned at lease start, from a
// reconnecting connection's startup settings, or from a client statement that
// mentions the setting), the server holds the client's value while the client's
// statements run and 0 in between: the guard (sqlIdleGuard), at the end of every unit
// (and after a recovery, and at lease start), moves the value into the placeholder
// setting pgtestproxy.idle and sets 0; the unguard (sqlIdleUnguard), at the start of
// every unit (in a block, only when the block has not failed: the units of a guarded
// lease's block wait for each other), sets it back and empties the placeholder. Both
// are session-level settings of the transaction: a rollback (the recovery of a failed
// unit, the client's ROLLBACK, an error in its block) undoes them together, back to a
// guarded state, so the guard keeps a placeholder that is already set.
//
// The guard's row is the client's value as the unit ended. The proxy times it itself
// (idleWatch): when a ReadyForQuery in the client's block reaches a session with
// nothing else pending, and then nothing is sent or answered, and the client sends
// nothing, for that long, the session gets the plain server's FATAL 25P03 and ends
// (its block rolled back; on a shared session key the other connections go on). A
// failed block is timed with the value of the unit before the block, to which a
// plain server's failed transaction returns.
//
// Not covered: a block that failed inside a SAVEPOINT of the client's returns to the
// value the savepoint began with, which is the client's, unguarded: the server's own
// timeout then ends the lease's backend at the same time as the proxy's (for every
// connection of a shared key). A FunctionCall message, and a query string with an
// SQL-level PREPARE or DECLARE and nothing that names the setting, run guarded (they
// read 0). A routine of the template that sets the value, with a name that is not
// written in the client's statement, is seen only if the value was not 0 already.

// spIdle is the placeholder setting that holds the client's value while guarded.
const spIdle = "pgtestproxy.idle"

// sqlIdleGuard keeps the client's value in the placeholder (unless it holds one
// already: nothing of the client's ran since the last guard) and sets 0.
const sqlIdleGuard = `SELECT pg_catalog.set_config('` + spIdle + `', CASE WHEN ` +
	`COALESCE(pg_catalog.current_setting('` + spIdle + `', true), '') OPERATOR(pg_catalog.<>) '' ` +
	`THEN pg_catalog.current_setting('` + spIdle + `') ` +
	`ELSE pg_catalog.current_setting('idle_in_transaction_session_timeout') END, false), ` +
	`pg_catalog.set_config('idle_in_transaction_session_timeout', '0', false)`

// sqlIdleUnguard sets the client's value back, if guarded, and empties the placeholder.
const sqlIdleUnguard = `SELECT pg_catalog.set_config('idle_in_transaction_session_timeout', v, false), ` +
	`pg_catalog.set_config('` + spIdle + `', '', false) ` +
	`FROM (SELECT pg_catalog.current_setting('` + spIdle + `', true)) s(v) WHERE v OPERATOR(pg_catalog.<>) ''`

// sqlIdleStart, at lease start (outside any transaction), reads the session's value
// and, when it is not 0, guards it; it always sets 0.
const sqlIdleStart = `SELECT v, CASE WHEN v OPERATOR(pg_catalog.<>) '0' THEN pg_catalog.set_config('` + spIdle + `', v, false) END, ` +
	`pg_catalog.set_config('idle_in_transaction_session_timeout', '0', false) ` +
	`FROM (SELECT pg_catalog.current_setting('idle_in_transaction_session_timeout')) s(v)`

// idleName is the setting's name, which a statement that may set it mentions.
const idleName = "idle_in_transaction_session_timeout"

// mentionsIdle reports whether a statement whose first word is kw (lower case) and
// whose settings are l may set the client's idle_in_transaction_session_timeout.
func mentionsIdle(kw, text string, l localOp) bool {
	switch kw {
	case "set", "reset", "do", "create":
	default:
		if !l.any() {
			return false
		}
	}
	return containsFold(text, idleName)
}

// noteIdle notes a client statement that may set the timeout: from then on, the
// lease guards every unit.
func (c *txClient) noteIdle(t txStmt) {
	if t.idle && !c.cn.be.idleOwn.Load() {
		c.cn.be.idleOwn.Store(true)
	}
}

// idleGuard returns the guard for the end of a unit that ends outside the client's
// block, when the lease needs it.
func (c *txClient) idleGuard() (planStmt, bool) {
	if !c.cn.be.idleOwn.Load() || c.skipMode {
		return planStmt{}, false
	}
	return planStmt{sql: sqlIdleGuard, role: rolePart, idle: true}, true
}

// unitIdle runs where a unit starts outside a client block: the client's statements
// see its own value. A FunctionCall, which ends its unit at once, runs guarded.
func (c *txClient) unitIdle(first bool) error {
	if !c.cn.be.idleOwn.Load() || c.msgType == 'F' || c.runGuarded {
		return nil
	}
	return c.inject(planStmt{sql: sqlIdleUnguard, role: rolePart}, first)
}

// guardIdle injects the guard before the Sync of a unit that ran SQL and ends outside
// the client's block.
func (c *txClient) guardIdle() error {
	if !c.unitSQL {
		return nil
	}
	if ps, ok := c.idleGuard(); ok {
		return c.inject(ps, false)
	}
	return nil
}

// guardedText reports whether a query string runs guarded: it holds no statement (an
// empty query, which the guard would change), or an SQL-level PREPARE or DECLARE,
// which would show the guard appended to the string in pg_prepared_statements or
// pg_cursors, and nothing that may set the client's timeout (it then reads 0 there).
func guardedText(sql string) bool {
	named, idle, empty := false, false, true
	for _, p := range sqllex.Split(sql) {
		if p.Kind == sqllex.Empty {
			continue
		}
		empty = false
		t := newTxStmt(&p)
		idle = idle || t.idle
		if p.Kind == sqllex.Other {
			kw := strings.ToLower(sqllex.Keyword(p.Text))
			named = named || kw == "prepare" || kw == "declare"
		}
	}
	return empty || named && !idle
}

// idleWatch is a session's timer for its client's idle block. Under c.mu.
type idleWatch struct {
	timer *time.Timer
	// last: the client's value at the end of its last unit that ran the guard; out: at
	// the end of its last unit outside a block, to which a failed block returns.
	last, out time.Duration
	outKnown  bool
}

// noteIdle records the guard's row: the client's value as it ended the unit.
func (c *txConn) noteIdle(s *Session, row []string) {
	if s == nil || len(row) == 0 {
		return
	}
	d, ok := parseMillis(row[0])
	if !ok {
		return
	}
	c.mu.Lock()
	s.idleW.last = d
	c.mu.Unlock()
}

// idleReadyLocked follows a ReadyForQuery with client status st going to s: in the
// client's block, with nothing else pending, the proxy times the client's value as a
// plain server does, and ends the session when it passes with nothing received. c.mu
// is held.
func (c *txConn) idleReadyLocked(s *Session, st byte) {
	if s == nil {
		return
	}
	w := &s.idleW
	if w.timer != nil {
		w.timer.Stop()
		w.timer = nil
	}
	if st == 'I' {
		w.out, w.outKnown = w.last, true
		return
	}
	d := w.last
	if st == 'E' && w.outKnown {
		d = w.out
	}
	if d <= 0 || c.q.front() != nil {
		return
	}
	mark := c.q.pushed + c.q.popped
	w.timer = time.AfterFunc(d, func() { c.idleFire(s, mark) })
}

// idleFire ends s with the plain server's FATAL 25P03 if nothing was sent or answered
// since its block went idle and its client still sent nothing.
func (c *txConn) idleFire(s *Session, mark int) {
	c.mu.Lock()
	ok := mark == c.q.pushed+c.q.popped && !s.left && s.idle.Load() && c.failure == nil
	c.mu.Unlock()
	if !ok {
		return
	}
	s.endIdle(&pgproto3.ErrorResponse{Severity: "FATAL", SeverityUnlocalized: "FATAL",
		Code: pgerrcode.IdleInTransactionSessionTimeout, Message: "terminating connection due to idle-in-transaction timeout"})
}

// endIdle ends a session whose client is idle in its block with the final error e:
// the session leaves as its client would, its block rolled back.
func (s *Session) endIdle(e *pgproto3.ErrorResponse) {
	s.idleEnded.Store(true)
	s.toClientFatal(e)
	wire.Interrupt(s.client)
}

// parseMillis reads a setting in milliseconds as the server shows it ("200ms", "5s",
// "1min", "2h", "1d", "0").
func parseMillis(v string) (time.Duration, bool) {
	i := 0
	for i < len(v) && v[i] >= '0' && v[i] <= '9' {
		i++
	}
	n, err := strconv.ParseInt(v[:i], 10, 64)
	if err != nil {
		return 0, false
	}
	unit := map[string]time.Duration{"": time.Millisecond, "ms": time.Millisecond, "s": time.Second,
		"min": time.Minute, "h": time.Hour, "d": 24 * time.Hour}[v[i:]]
	if unit == 0 {
		return 0, false
	}
	return time.Duration(n) * unit, true
}

// idleStop stops the timer of a session that leaves.
func (c *txConn) idleStop(s *Session) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if s.idleW.timer != nil {
		s.idleW.timer.Stop()
		s.idleW.timer = nil
	}
}
