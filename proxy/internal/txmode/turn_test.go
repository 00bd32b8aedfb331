package txmode

import (
	"runtime"
	"sync"
	"testing"
	"time"
)

// Sessions of one key that wait for their turn are woken one at a time, when a turn
// ends, and not by the replies that complete units (which wake txConn.changed's
// waiters): each wait ends with a turn that ended, so there are at most as many waits
// as turns that ended. When every waiter was woken at every turn's end and every
// reply, as before, eight sessions waited several times per turn.
func TestTurnWakesOneWaiter(t *testing.T) {
	const sessions, turns = 8, 100
	c := &txConn{be: &Backend{}}
	c.changed = sync.NewCond(&c.mu)
	c.turn = sync.NewCond(&c.mu)
	first := &Session{c: c}
	if err := c.acquire(first); err != nil { // the others wait for it
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for range sessions {
		s := &Session{c: c}
		wg.Go(func() {
			for range turns {
				if err := c.acquire(s); err != nil {
					t.Error(err)
					return
				}
				runtime.Gosched() // it writes its unit
				c.mu.Lock()
				c.changed.Broadcast() // the server's reply completes the unit (onReady)
				c.mu.Unlock()
				c.unitEnd(s, true, txState{})
				runtime.Gosched() // its client reads the reply and sends the next
			}
		})
	}
	for deadline := time.Now().Add(time.Minute); ; runtime.Gosched() { // wait until all of them wait
		c.mu.Lock()
		all := c.turnWaits >= sessions
		c.mu.Unlock()
		if all {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the sessions did not all wait for the first one's turn")
		}
	}
	c.unitEnd(first, true, txState{})
	wg.Wait()
	c.mu.Lock()
	defer c.mu.Unlock()
	if ended := sessions*turns + 1; c.turnWaits > ended {
		t.Errorf("sessions waited %d times for their turn, %d turns ended: woken for turns they did not get", c.turnWaits, ended)
	}
}
