package txmode

import (
	"github.com/pgtestproxy/pgtestproxy/internal/sqllex"
)

// Isolation levels. A savepoint cannot change its transaction's isolation level, so a
// client's BEGIN ISOLATION LEVEL … gets a NOTICE and runs at the level of the proxy's
// transaction. But while the lease's transaction is still empty (nothing of a client's
// ran in it, and no portal was bound), the proxy can begin it again: a client's block
// that asks for REPEATABLE READ or SERIALIZABLE as the first thing of a lease (BEGIN
// with the level, or SET TRANSACTION right after BEGIN) has the proxy run ROLLBACK,
// BEGIN ISOLATION LEVEL …, SAVEPOINT pgtestproxy in its place, so the block runs at
// its level, and so does the rest of the lease. Later blocks that ask for the lease's
// level get no NOTICE. With one backend per clone nothing else writes to the clone
// while the lease lasts, so a lease-long snapshot hides nothing; the difference left is
// that current_setting('transaction_isolation') reads the lease's level outside that
// block too.

// reBegin is the proxy's transaction begun again at a client's isolation level.
func reBegin(iso sqllex.Isolation) []planStmt {
	return []planStmt{{sql: "ROLLBACK", role: roleInfra},
		{sql: "BEGIN ISOLATION LEVEL " + iso.String() + ", READ WRITE", role: roleInfra},
		{sql: sqlSavepoint, role: roleInfra, ok: effSavepoint}}
}

// noteBound notes a portal bound to the statement named stmt: from then on the lease's
// transaction is not begun again, which would end the portal (unless it holds the
// BEGIN or SET TRANSACTION that begins it again).
func (c *txClient) noteBound(stmt string) {
	if t, ok := c.stmts[stmt]; ok && (t.kind == sqllex.Begin || t.kind == sqllex.SetTransaction) {
		return
	}
	c.noteUsed()
}

// noteUsed notes that the lease's transaction holds something of a client's.
func (c *txClient) noteUsed() {
	if c.cn.be.untouched.Load() {
		c.cn.be.untouched.Store(false)
	}
}

// isolation returns the plan for a BEGIN or SET TRANSACTION that gives an isolation
// level, or nil when rewrite's plan stands.
func (c *txClient) isolation(t txStmt, untouched bool) []planStmt {
	iso := t.txModes.Isolation
	if iso == sqllex.IsolationUnset || t.ignore || t.kind != sqllex.Begin && t.kind != sqllex.SetTransaction {
		return nil
	}
	begin := t.kind == sqllex.Begin
	if begin == c.st.block || !begin && !c.st.block {
		return nil // misplaced: rewrite says what a plain server says
	}
	fresh := untouched && c.rw == rwFresh && c.st.sp == spClean &&
		(iso == sqllex.RepeatableRead || iso == sqllex.Serializable)
	if !fresh && iso != sqllex.Isolation(c.cn.be.iso.Load()) {
		return nil
	}
	// The level is the lease's (now): what is left is the other modes.
	rest := t
	m := t.txModes
	m.Isolation, m.ReadOnly = sqllex.IsolationUnset, sqllex.Unset
	rest.modes = m.String()
	var plan []planStmt
	if fresh {
		plan = reBegin(iso)
		c.cn.be.iso.Store(uint32(iso))
		if !begin {
			plan = append(plan, keepReadOnly(c.st)...) // the block's READ ONLY was in the savepoint
		}
	}
	switch {
	case begin:
		plan = append(plan, rewriteBegin(rest, c.st)...)
	case rest.modes == "" && rest.ro == sqllex.Unset:
		plan = append(plan, planStmt{sql: sqlCarrier, role: roleCarrier, tag: t.tag})
	default:
		plan = append(plan, rewriteSetTransaction(rest, c.st, where{})...)
	}
	return plan
}
