package txmode

// Turns. The sessions of a shared key wait for their turn on the backend in acquire,
// on their own condition (txConn.turn), not on txConn.changed, which every reply that
// completes a unit broadcasts: with eight connections on one key, seven waited there,
// and every unit woke them all (twice) for one of them to take the turn and the others
// to wait again. Now a turn that ends wakes one waiter, the one that waited longest
// (sync.Cond.Signal), and only what can end a wait for every waiter (the backend's
// failure, a deadlock watch that is due, deadlock.go) wakes them all.

// waitTurnLocked waits, with c.mu held, until a turn ended or every waiter is woken.
func (c *txConn) waitTurnLocked() {
	c.turnWaits++
	c.turn.Wait()
}

// passTurnLocked wakes one session waiting for its turn, with c.mu held: the holder
// let go, or a waiter that was woken for the turn gives up waiting (its deadlock), so
// the wake-up goes on to the next.
func (c *txConn) passTurnLocked() {
	if c.holder == nil {
		c.turn.Signal()
	}
}
