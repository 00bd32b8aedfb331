package txmode

import (
	"slices"

	"github.com/jackc/pgerrcode"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/pgtestproxy/pgtestproxy/internal/pgerr"
	"github.com/pgtestproxy/pgtestproxy/internal/sqllex"
)

// query forwards a simple-protocol Query, rewriting the transaction control in it.
func (c *txClient) query(body []byte) error {
	sql, _, ok := cstring(body)
	if !ok {
		return pgerr.New(pgerrcode.ProtocolViolation, "invalid Query message")
	}
	c.runGuarded = c.cn.be.idleOwn.Load() && guardedText(sql)
	defer func() { c.runGuarded = false }()
	if err := c.beginSQL(); err != nil {
		return err
	}
	c.unitRuns = true
	delete(c.stmts, "")
	delete(c.portals, "")
	c.unnamedLive = false // the server drops it at a Query
	if c.s.names != nil {
		c.s.names.forget('S', "")
	}
	if err := c.closePortals(false); err != nil {
		return err
	}
	p := pending{msg: 'Q', work: true}
	if c.skipMode {
		return c.sendRaw(p, 'Q', body, true)
	}
	plan, hint, err := c.planQuery(sql)
	if err != nil {
		return err
	}
	p.hint = hint
	if plan == nil {
		return c.sendRaw(p, 'Q', body, true)
	}
	p.plan = plan
	if err := c.send(p, &pgproto3.Query{String: plan.text}); err != nil {
		return err
	}
	c.endUnit()
	return nil
}

// planQuery rewrites the transaction control in a query string; it returns a nil plan
// when the string goes to the server as written, and whether a 25001 error gets the
// mode=db hint.
func (c *txClient) planQuery(sql string) (*queryPlan, bool, error) {
	pieces := sqllex.Split(sql)
	if one := onlyStatement(pieces); one >= 0 {
		// The common case: one statement, rewritten or as written; after it, nothing
		// but blanks or comments (pgbench ends its statements with a semicolon).
		t := newTxStmt(&pieces[one])
		c.noteDDL(t)
		c.noteHold(t)
		c.noteIdle(t)
		c.notePath(t)
		if !c.cn.be.idleOwn.Load() && !c.pathMention && t.dealloc == "" && t.ch == nil && !t.control() && !c.checkAtEnd() &&
			!c.restoreAtEndNeeded(t) && !c.commitsTemps() &&
			(len(pieces) == 1 && (!t.noTx() || insteadOfNoTx(t, sql) == nil) || len(pieces) > 1 && !t.noTx() && len(c.cursors) == 0) {
			_, err := c.rewrite(t, true)
			if len(pieces) > 1 {
				c.endOneStatement(pieces)
			}
			return nil, t.noTx(), err
		}
	}
	var qb queryBuilder
	hint := false
	real := 0
	for i := range pieces {
		if pieces[i].Kind != sqllex.Empty {
			real++
		}
	}
	c.implicit = real > 1
	defer func() { c.implicit = false }()
	for i := range pieces {
		p := &pieces[i]
		if p.Kind == sqllex.Empty {
			qb.keep(p, false)
			continue
		}
		t := newTxStmt(p)
		c.noteDDL(t)
		c.noteHold(t)
		c.noteIdle(t)
		c.notePath(t)
		plan, err := c.rewrite(t, lastReal(pieces, i))
		if err != nil {
			return nil, false, err
		}
		if t.noTx() && !c.skipMode {
			plan = insteadOfNoTx(t, p.Text)
		}
		hint = hint || t.noTx() && plan == nil
		switch {
		case plan == nil:
			qb.keep(p, true)
			qb.note(t.ch)
		case slices.ContainsFunc(plan, clientPart):
			qb.around(p, plan, t.ch)
		default:
			qb.replace(p, plan)
		}
	}
	if !c.skipMode && !c.st.block && c.st.sp != spNone && qb.stmts() > 0 && closed(pieces[len(pieces)-1].Text) {
		// The string's implicit transaction commits at its end.
		if c.cn.be.deferrable.Load() {
			qb.check(len(sql))
			if ps, ok := c.probe(); ok {
				qb.add(ps, len(sql))
			}
		}
		holds := c.holdsAtCommit(effNone)
		if len(holds) > 0 {
			qb.commits()
		}
		for _, ps := range closeCursors(c.cursors) {
			qb.add(ps, len(sql))
		}
		if ps, ok := c.restoreAtEnd(); ok {
			qb.add(ps, len(sql))
		}
		for _, ps := range holds {
			qb.commitsTo(ps, len(sql))
		}
		for _, ps := range c.temps.atCommit(effNone) {
			qb.add(ps, len(sql))
		}
		c.temps.committed()
	}
	if qb.stmts() > 0 && closed(pieces[len(pieces)-1].Text) {
		if ps, ok := c.pathRead(); ok {
			qb.end(ps, len(sql))
		}
		if ps, ok := c.idleGuard(); ok && !c.runGuarded {
			qb.end(ps, len(sql))
		}
	}
	if !c.st.block {
		c.cursors = nil
		c.holds = nil // materialised at the string's end, or closed by its rollback
		c.stashed = false
	}
	return qb.done(sql), hint, nil
}

// onlyStatement returns the index of the one statement among pieces that the rest
// are blanks or comments after, or -1.
func onlyStatement(pieces []sqllex.Statement) int {
	if len(pieces) == 0 || pieces[0].Kind == sqllex.Empty {
		return -1
	}
	for _, p := range pieces[1:] {
		if p.Kind != sqllex.Empty {
			return -1
		}
	}
	return 0
}

// endOneStatement does, for a string of one statement and blanks or comments after it
// that runs as written with no cursor declared, what the end of planQuery's loop
// does for it: nothing is added to the string, and the session's notes of what its
// implicit transaction committed are kept alike.
func (c *txClient) endOneStatement(pieces []sqllex.Statement) {
	// With no temporary table of an ON COMMIT action (commitsTemps), the commit
	// changes only what a block saved for its rollback.
	if c.temps.saved != nil && !c.skipMode && !c.st.block && c.st.sp != spNone && closed(pieces[len(pieces)-1].Text) {
		c.temps.committed()
	}
	if !c.st.block {
		c.cursors = nil
		c.stashed = false
	}
}

// closed reports whether a statement can be followed by another: it leaves no quote,
// comment, parenthesis or routine body open. The server refuses a string that does
// leave one open, so it needs no deferred check.
func closed(last string) bool {
	return len(sqllex.Split(last+"\n;SELECT")) == 2
}

// noteDDL notes a statement that may create or drop a deferrable constraint: from then
// on, the lease's autocommit units check their deferred constraints, until the end of
// an autocommit unit learns again whether there are any.
func (c *txClient) noteDDL(t txStmt) {
	if t.ddl {
		c.cn.be.noteDDL()
		c.noteTemp(t)
	}
}

// probe returns the statement that learns again whether the lease has deferrable
// constraints, once after DDL, at the end of an autocommit unit that checks them.
func (c *txClient) probe() (planStmt, bool) {
	if !c.cn.be.takeRelearn() {
		return planStmt{}, false
	}
	return planStmt{sql: sqlHasDeferrable, role: rolePart, probe: true}, true
}

// checkAtEnd reports whether the unit, predicted to end outside the client's block
// with work of its own in the proxy's savepoint, must check deferred constraints
// before its ReadyForQuery, as the commit of a plain server's implicit transaction
// does.
func (c *txClient) checkAtEnd() bool {
	return !c.skipMode && !c.st.block && c.st.sp != spNone && c.cn.be.deferrable.Load()
}

// rewrite returns the server statements for t in the predicted state, or nil when t
// runs as written, and advances the prediction past t.
func (c *txClient) rewrite(t txStmt, last bool) ([]planStmt, error) {
	if t.ends() {
		c.unitCtl = true
	}
	untouched := c.cn.be.untouched.Load()
	c.noteRan(t)
	if p := c.deallocate(t); p != nil {
		return p, nil
	}
	if !t.control() {
		return c.withLocals(t, nil), nil
	}
	if t.kind == sqllex.Commit && c.st.block && !c.failedKnown {
		_, sent, _ := c.cn.unitStart()
		st, skip, err := c.cn.awaitUnits(c.s, sent, c.flush)
		if err != nil {
			return nil, err
		}
		// When the server skips this unit, the rewrite does not matter.
		c.failed, c.failedKnown = !skip && st.status == 'E', true
	}
	wasBlock, failed := c.st.block, c.failed
	if t.cursor != "" && (c.st.block || c.implicit) {
		c.cursors = append(c.cursors, t.cursor)
	}
	w := where{failed: c.failed, last: last, deferred: c.cn.be.deferrable.Load(),
		implicit: c.implicit, cursors: c.cursors}
	if t.kind == sqllex.Commit {
		w.atCommit = append(c.holdsAtCommit(effAbandon), c.temps.atCommit(effAbandon)...)
	}
	plan := rewrite(t, c.st, w)
	if p := c.isolation(t, untouched); p != nil {
		plan = p
	}
	plan = c.withLocals(t, c.readWrite(t, plan))
	for _, ps := range plan {
		c.st.apply(ps.ok)
	}
	plan = c.readOnlyAfter(t, plan, wasBlock)
	c.endTemps(t, wasBlock, failed, last)
	if wasBlock && (t.kind == sqllex.Commit || t.kind == sqllex.Rollback || t.kind == sqllex.PrepareTransaction) {
		c.cursors = nil // closed by the rewrite, or dropped by the rollback
	}
	// A new block, or ROLLBACK TO one of the client's savepoints, starts clean.
	if t.ends() && !(t.kind == sqllex.Begin && wasBlock) || t.kind == sqllex.RollbackTo && plan == nil {
		c.failed, c.failedKnown = false, true
	}
	return plan, nil
}
