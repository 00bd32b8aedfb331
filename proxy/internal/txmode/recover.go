package txmode

import (
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5/pgproto3"
)

// recoverLocked undoes a failed autocommit unit, as a plain server's implicit
// transaction would be: it rolls back to the proxy's savepoint and holds the unit's
// ReadyForQuery until that is done. c.mu is held and released.
func (c *txConn) recoverLocked() error {
	if c.st.sp == spNone {
		c.mu.Unlock()
		return c.lost("recover a failed statement", errors.New("the proxy's savepoint is gone"))
	}
	owner := c.q.front().owner
	c.popLocked()
	if c.q.len() > 0 {
		c.mu.Unlock()
		return c.lost("recover a failed statement", errors.New("messages were sent behind it"))
	}
	c.retry = false
	// Until the recovery is queued the queue is empty: recovering tells a session
	// that drains, and the lease's stop, that the server still has to answer.
	c.recovering = true
	c.mu.Unlock()
	return c.sendRecovery(owner)
}

// recovered completes the recovery when its Sync is answered.
func (c *txConn) recovered(status byte) error {
	owner := c.q.front().owner
	c.popLocked()
	if status == 'E' && c.retry {
		// A CancelRequest meant for the client's statement hit the rollback: again.
		c.retry = false
		c.mu.Unlock()
		return c.sendRecovery(owner)
	}
	if status != 'T' {
		c.mu.Unlock()
		return c.lost("recover a failed statement", fmt.Errorf("status %q after ROLLBACK TO SAVEPOINT", status))
	}
	c.st.sp = spClean
	c.recovering = false
	c.unitsDone++
	c.changed.Broadcast()
	c.mu.Unlock()
	owner.toClient(&pgproto3.ReadyForQuery{TxStatus: 'I'})
	return nil
}

// sendRecovery sends ROLLBACK TO the proxy's savepoint through the unnamed portal,
// which a failed autocommit unit leaves no client portal in, under the proxy's
// statement name, closed first (a statement of the proxy's that failed in the unit
// leaves it prepared) and after. The unit's ReadyForQuery goes to owner when it is
// done.
func (c *txConn) sendRecovery(owner *Session) error {
	msgs := []struct {
		p   pending
		msg interface{ Encode([]byte) ([]byte, error) }
	}{
		{pending{msg: 'C'}, &pgproto3.Close{ObjectType: 'S', Name: spName}},
		{pending{msg: 'P'}, &pgproto3.Parse{Name: spName, Query: sqlRollbackTo}},
		{pending{msg: 'B'}, &pgproto3.Bind{PreparedStatement: spName}},
		{pending{msg: 'E'}, &pgproto3.Execute{}},
		{pending{msg: 'C'}, &pgproto3.Close{ObjectType: 'S', Name: spName}},
	}
	if c.be.idleOwn.Load() {
		// The rollback may return to the client's value (idle.go): guarded again.
		msgs = append(msgs, msgs[1:]...)
		msgs[5].msg = &pgproto3.Parse{Name: spName, Query: sqlIdleGuard}
	}
	msgs = append(msgs, struct {
		p   pending
		msg interface{ Encode([]byte) ([]byte, error) }
	}{pending{msg: 'S'}, syncMsg})
	c.wmu.Lock()
	defer c.wmu.Unlock()
	for _, m := range msgs {
		m.p.role, m.p.recovery, m.p.owner = roleInfra, true, owner
		c.mu.Lock()
		c.q.push(m.p)
		c.mu.Unlock()
		if err := writeMsg(c.be.wr, &c.scratch, m.msg); err != nil {
			return err
		}
	}
	return c.be.wr.Flush()
}
