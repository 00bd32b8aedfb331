package txmode

import (
	"strings"

	"github.com/jackc/pgerrcode"

	"github.com/pgtestproxy/pgtestproxy/internal/sqllex"
)

// READ ONLY beyond a client's BEGIN READ ONLY (rewrite.go).
//
// A session's default_transaction_read_only, which the server reports (ParameterStatus,
// PostgreSQL 14+), makes every transaction of a plain server read-only from its start.
// While it is on, the proxy sets its savepoint read-only (SET LOCAL
// transaction_read_only) at the start of each unit and wherever a rewrite sets or rolls
// back to the savepoint outside a client block, and a client's BEGIN starts a READ ONLY
// block unless it says READ WRITE.
//
// Going back to read-write (SET TRANSACTION READ WRITE in a READ ONLY block, BEGIN READ
// WRITE under the default) cannot be a SET in the proxy's savepoint, a subtransaction
// that is read-only. A plain server allows it before the transaction's first query and
// refuses it after. So the proxy follows whether anything of the client's but
// transaction control ran in the savepoint since it was set: if not, it rolls back to
// the savepoint, which loses nothing and leaves it read-write; if so, it raises the plain
// server's error; after a SAVEPOINT of the client's in the block it lets the server
// refuse it, as a plain server does inside a subtransaction.

// rwState is what ran in the proxy's savepoint since it was set (at a unit's start
// outside a client block, or for a chained block).
type rwState uint8

const (
	rwFresh  rwState = iota // only transaction control
	rwRan                   // a statement of the client's
	rwNested                // a SAVEPOINT of the client's in its block
)

const msgReadWriteLate = "transaction read-write mode must be set before any query"

// noteReadOnly records the server's default_transaction_read_only.
func (b *Backend) noteReadOnly(name, value string) {
	if name == "default_transaction_read_only" {
		b.defaultRO.Store(value == "on")
	}
}

// readOnlyDefault reports whether the session's default_transaction_read_only may be
// on once the lease's transaction is rolled back: it is now, or the client's startup
// parameters may set it.
func (b *Backend) readOnlyDefault() bool {
	return b.defaultRO.Load() || b.runtime["default_transaction_read_only"] != "" ||
		strings.Contains(b.runtime["options"], "default_transaction_read_only")
}

// noteRan notes that the client's statement t runs.
func (c *txClient) noteRan(t txStmt) {
	switch t.kind {
	case sqllex.Begin, sqllex.Commit, sqllex.Rollback, sqllex.Release, sqllex.RollbackTo,
		sqllex.SetTransaction, sqllex.PrepareTransaction:
	case sqllex.Savepoint:
		if c.st.block {
			c.rw = rwNested
		}
	default:
		if c.rw == rwFresh {
			c.rw = rwRan
		}
		c.noteUsed()
	}
}

// unitReadOnly runs where a unit starts outside a client block, at the proxy's
// savepoint: the unit's transaction is read-only when the session's default says so.
func (c *txClient) unitReadOnly(first bool) error {
	c.rw = rwFresh
	if err := c.unitLocals(first); err != nil {
		return err
	}
	if err := c.unitIdle(first); err != nil {
		return err
	}
	if !c.cn.be.defaultRO.Load() {
		return nil
	}
	return c.inject(planStmt{sql: sqlReadOnly, role: roleInfra}, first)
}

// readWrite adjusts the plan of a statement that makes the transaction read-write
// where the proxy's savepoint is read-only, before the plan is applied.
func (c *txClient) readWrite(t txStmt, plan []planStmt) []planStmt {
	switch {
	case t.kind == sqllex.SetTransaction && !t.ignore && t.ro == sqllex.No && c.st.block && c.st.ro:
		switch c.rw {
		case rwRan:
			return carrierOnly(t.tag, raiseError(pgerrcode.ActiveSQLTransaction, msgReadWriteLate, ""))
		case rwFresh:
			for i := range plan {
				if plan[i].sql == sqlReadWrite {
					plan[i].sql = sqlRollbackTo
				}
			}
		}
	case t.kind == sqllex.Begin && t.ro == sqllex.No && !c.st.block && c.rw == rwFresh && c.cn.be.defaultRO.Load():
		return append([]planStmt{{sql: sqlRollbackTo, role: rolePart}}, plan...)
	}
	return plan
}

// readOnlyAfter follows a plan that was applied: under the session's default, a block
// begun without READ WRITE is READ ONLY, and a savepoint set or rolled back to outside
// a client block is made read-only again.
func (c *txClient) readOnlyAfter(t txStmt, plan []planStmt, wasBlock bool) []planStmt {
	reset := false
	for _, ps := range plan {
		reset = reset || ps.sql == sqlSavepoint || ps.sql == sqlRollbackTo || ps.ok == effChained
	}
	if reset {
		c.rw = rwFresh
	}
	if !c.cn.be.defaultRO.Load() {
		return plan
	}
	switch {
	case t.kind == sqllex.Begin && !wasBlock && c.st.block && t.ro != sqllex.No && !c.st.ro:
		// The savepoint is read-only already; the part carries the effect to the
		// server pump's state.
		plan = append(plan, planStmt{sql: sqlReadOnly, role: rolePart, ok: effReadOnly})
		c.st.apply(effReadOnly)
	case reset && !c.st.block && c.st.sp != spNone:
		plan = append(plan, planStmt{sql: sqlReadOnly, role: rolePart})
	}
	return plan
}
