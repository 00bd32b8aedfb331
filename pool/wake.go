package pool

import "slices"

// Waking waiters. A waiting Acquire claims again (one catalog round trip) each time it
// is woken. A clone kept for tx mode (parked, or ready with a backend this process
// kept) is never a db-mode lease's (claimDB skips it), so the releases that only make
// such a clone, or only end a tx lease's Ending, wake the tx-mode waiters alone: under
// mixed load tx mode releases hundreds of clones a second, and waking every db-mode
// waiter for each made the catalog answer thousands of fruitless claims a second (seen:
// ≈7000 catalog transactions/s at 5 db-mode leases/s, 100 sessions).
//
// db-mode waiters queue, first come first served, and a clone made ready wakes one of
// them, not all: with 50 of them waiting, each clone woke 50 claims of which 49 found
// nothing (seen: 56 catalog transactions a lease, 3,065/s at 55 db-mode leases/s, the
// catalog's backends taking CPU from the clones being made). Only the queue's first
// polls (for what other processes make); one whose claim succeeds after a poll wakes the
// next, as more may be there. A waiter woken that leaves without a clone (its timeout,
// a changed template) passes the wake on, so none is lost; one whose claim found
// nothing (another process, or a new arrival, was first) keeps its place at the front.

// dbTicket is a db-mode waiter's place in its generation's queue (g.mu guards it).
type dbTicket struct {
	woken  chan struct{} // closed when the waiter is woken, which takes it out of the queue
	queued bool
}

// queueDB puts t in the db-mode queue, at the front (a waiter that was woken and
// found nothing keeps its place) or the back, unless it is there; it returns the
// channel its wake closes. Queue before claiming: a clone readied after the claim then
// wakes it.
func (g *generation) queueDB(t *dbTicket, front bool) <-chan struct{} {
	g.mu.Lock()
	defer g.mu.Unlock()
	if !t.queued {
		t.woken, t.queued = make(chan struct{}), true
		if front {
			g.dbQueue = slices.Insert(g.dbQueue, 0, t)
		} else {
			g.dbQueue = append(g.dbQueue, t)
		}
	}
	return t.woken
}

// firstDB reports whether t is the first db-mode waiter.
func (g *generation) firstDB(t *dbTicket) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.dbQueue) > 0 && g.dbQueue[0] == t
}

// leaveDB takes t out of the queue. It reports whether t had been woken (and so was
// out of it already): a wake its waiter did not use is the caller's to pass on.
func (g *generation) leaveDB(t *dbTicket) (wasWoken bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if !t.queued {
		return t.woken != nil
	}
	g.dbQueue = slices.DeleteFunc(g.dbQueue, func(q *dbTicket) bool { return q == t })
	t.queued = false
	return false
}

// wakeDB wakes the first db-mode waiter, or all of them. g.mu is held.
func (g *generation) wakeDB(all bool) {
	n := min(1, len(g.dbQueue))
	if all {
		n = len(g.dbQueue)
	}
	for _, t := range g.dbQueue[:n] {
		t.queued = false
		close(t.woken)
	}
	g.dbQueue = slices.Delete(g.dbQueue, 0, n)
}

// wakeNextDB wakes the first db-mode waiter.
func (g *generation) wakeNextDB() {
	g.mu.Lock()
	g.wakeDB(false)
	g.mu.Unlock()
}

// signalTx wakes the waiters of tx mode only: what became ready is for tx leases.
func (g *generation) signalTx() {
	g.mu.Lock()
	close(g.notify)
	g.notify = make(chan struct{})
	g.mu.Unlock()
}
