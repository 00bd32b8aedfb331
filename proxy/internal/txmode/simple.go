package txmode

import (
	"strings"

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
	if err := c.beginSQL(); err != nil {
		return err
	}
	delete(c.stmts, "")
	delete(c.portals, "")
	if c.s.names != nil {
		c.s.names.forget('S', "")
		c.s.names.forget('P', "")
	}
	c.noteDeallocate(sql)
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
	if len(pieces) == 1 {
		// The common case: one statement, rewritten or as written.
		t := newTxStmt(&pieces[0])
		if !t.control() {
			_, err := c.rewrite(t, true)
			return nil, t.noTx(), err
		}
	}
	var qb queryBuilder
	hint := false
	for i := range pieces {
		p := &pieces[i]
		if p.Kind == sqllex.Empty {
			qb.keep(p, false)
			continue
		}
		t := newTxStmt(p)
		hint = hint || t.noTx()
		plan, err := c.rewrite(t, lastReal(pieces, i))
		if err != nil {
			return nil, false, err
		}
		if plan == nil {
			qb.keep(p, true)
			continue
		}
		qb.replace(p, plan)
	}
	return qb.done(sql), hint, nil
}

// rewrite returns the server statements for t in the predicted state, or nil when t
// runs as written, and advances the prediction past t.
func (c *txClient) rewrite(t txStmt, last bool) ([]planStmt, error) {
	if t.ends() {
		c.unitCtl = true
	}
	if !t.control() {
		return nil, nil
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
	wasBlock := c.st.block
	plan := rewrite(t, c.st, c.failed, last)
	for _, ps := range plan {
		c.st.apply(ps.ok)
	}
	// A new block, or ROLLBACK TO one of the client's savepoints, starts clean.
	if t.ends() && !(t.kind == sqllex.Begin && wasBlock) || t.kind == sqllex.RollbackTo && plan == nil {
		c.failed, c.failedKnown = false, true
	}
	return plan, nil
}

// noteDeallocate forgets the proxy's prepared statements when the client may have
// deallocated them; they are prepared again under new names when needed.
func (c *txClient) noteDeallocate(sql string) {
	if strings.EqualFold(sqllex.Keyword(sql), "deallocate") {
		c.cn.be.forgetPrepared()
	}
}
