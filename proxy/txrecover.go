package proxy

import (
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5/pgproto3"
)

// recoverLocked undoes a failed autocommit unit, as a plain server's implicit
// transaction would be: it rolls back to the proxy's savepoint and holds the unit's
// ReadyForQuery until that is done. s.mu is held and released.
func (s *txSession) recoverLocked() error {
	if s.st.sp == spNone {
		s.mu.Unlock()
		return s.lost("recover a failed statement", errors.New("the proxy's savepoint is gone"))
	}
	s.popLocked()
	if s.q.len() > 0 {
		s.mu.Unlock()
		return s.lost("recover a failed statement", errors.New("messages were sent behind it"))
	}
	s.retry = false
	s.mu.Unlock()
	return s.sendRecovery()
}

// recovered completes the recovery when its Sync is answered.
func (s *txSession) recovered(status byte) error {
	s.popLocked()
	if status == 'E' && s.retry {
		// A CancelRequest meant for the client's statement hit the rollback: again.
		s.retry = false
		s.mu.Unlock()
		return s.sendRecovery()
	}
	if status != 'T' {
		s.mu.Unlock()
		return s.lost("recover a failed statement", fmt.Errorf("status %q after ROLLBACK TO SAVEPOINT", status))
	}
	s.st.sp = spClean
	s.unitsDone++
	s.changed.Broadcast()
	s.mu.Unlock()
	s.toClient(&pgproto3.ReadyForQuery{TxStatus: 'I'})
	return nil
}

// sendRecovery sends ROLLBACK TO the proxy's savepoint, self-contained (it does not
// rely on statements prepared before the failure) and through the unnamed portal,
// which a failed autocommit unit leaves no client portal in.
func (s *txSession) sendRecovery() error {
	const name = "pgtestproxy_recover"
	msgs := []struct {
		p   pending
		msg interface{ Encode([]byte) ([]byte, error) }
	}{
		{pending{msg: 'C'}, &pgproto3.Close{ObjectType: 'S', Name: name}},
		{pending{msg: 'P'}, &pgproto3.Parse{Name: name, Query: sqlRollbackTo}},
		{pending{msg: 'B'}, &pgproto3.Bind{PreparedStatement: name}},
		{pending{msg: 'E'}, &pgproto3.Execute{}},
		{pending{msg: 'S'}, syncMsg},
	}
	s.wmu.Lock()
	defer s.wmu.Unlock()
	for _, m := range msgs {
		m.p.role, m.p.recovery = roleInfra, true
		s.mu.Lock()
		s.q.push(m.p)
		s.mu.Unlock()
		if err := writeMsg(s.be.wr, &s.scratch, m.msg); err != nil {
			return err
		}
	}
	return s.be.wr.Flush()
}
