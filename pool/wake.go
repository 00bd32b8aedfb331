package pool

import "github.com/pgtestproxy/pgtestproxy/internal/leasemode"

// Waking waiters. A waiting Acquire claims again (one catalog round trip) each time it
// is woken. A clone kept for tx mode (parked, or ready with a backend this process
// kept) is never a db-mode lease's (claimDB skips it), so the releases that only make
// such a clone, or only end a tx lease's Ending, wake the tx-mode waiters alone: under
// mixed load tx mode releases hundreds of clones a second, and waking every db-mode
// waiter for each made the catalog answer thousands of fruitless claims a second (seen:
// ≈7000 catalog transactions/s at 5 db-mode leases/s, 100 sessions).

// readyFor returns a channel closed at the next signal that may have readied a clone a
// lease in mode can take.
func (g *generation) readyFor(mode leasemode.Mode) <-chan struct{} {
	g.mu.Lock()
	defer g.mu.Unlock()
	if mode == leasemode.DB {
		return g.dbReady
	}
	return g.notify
}

// signalTx wakes the waiters of tx mode only: what became ready is for tx leases.
func (g *generation) signalTx() {
	g.mu.Lock()
	close(g.notify)
	g.notify = make(chan struct{})
	g.mu.Unlock()
}
