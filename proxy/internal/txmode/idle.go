package txmode

import "github.com/pgtestproxy/pgtestproxy/internal/sqllex"

// The client's own idle_in_transaction_session_timeout.
//
// The proxy's transaction is idle in a transaction between any two units, so the
// server must hold 0 whenever it waits for a message outside the client's block; but
// the client's value (from its startup packet, the server's configuration, or its
// own SET) must read back, and apply to its block, as on a plain server. The server
// arms the timeout only when it sends ReadyForQuery, with the value then in effect.
// So, once the lease's client value may be other than 0 (Backend.idleOwn), the
// server holds the client's value while the client's statements run and 0 in
// between: the guard (sqlIdleGuard), at the end of every unit that ends outside the
// client's block (and after a recovery, and at lease start), moves the value into
// the placeholder setting pgtestproxy.idle and sets 0; the unguard (sqlIdleUnguard),
// at the start of every unit outside the client's block, sets it back and empties the
// placeholder. Both are session-level settings of the transaction: a rollback (the
// recovery of a failed unit, the client's ROLLBACK) undoes them together, back to a
// guarded state, so the guard keeps a placeholder that is already set. Inside the
// client's block nothing is guarded: the server's own timeout ends an idle block
// with FATAL 25P03, as a plain server does (and so ends the lease's backend).

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
	if !c.cn.be.idleOwn.Load() || c.skipMode || c.st.block {
		return planStmt{}, false
	}
	return planStmt{sql: sqlIdleGuard, role: rolePart}, true
}

// unitIdle runs where a unit starts outside a client block: the client's statements
// see its own value. A FunctionCall, which ends its unit at once, runs guarded.
func (c *txClient) unitIdle(first bool) error {
	if !c.cn.be.idleOwn.Load() || c.msgType == 'F' || c.blankQuery {
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

// blank reports whether a query string holds no statement (an empty query).
func blank(sql string) bool {
	for _, p := range sqllex.Split(sql) {
		if p.Kind != sqllex.Empty {
			return false
		}
	}
	return true
}
