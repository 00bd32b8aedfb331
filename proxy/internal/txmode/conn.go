package txmode

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgerrcode"
	"github.com/jackc/pgx/v5/pgproto3"
	"go.uber.org/zap"

	"github.com/pgtestproxy/pgtestproxy/proxy/internal/wire"
)

// txConn is a tx-mode lease's backend while sessions use it: the reply queue and the
// server pump (server.go) that all its sessions share, where the proxy's transaction
// stands, and whose turn it is. Sessions take turns one unit at a time, or one client
// transaction block, which holds the backend until it ends (README, "How it works"): a session gets
// the turn when it opens a unit and gives it up when it has sent one that ends outside
// a block. Replies go to the session whose message the queue says they answer.
type txConn struct {
	guard *wire.Guard
	log   *zap.Logger
	stats *wire.Counters
	be    *Backend

	wmu sync.Mutex // the backend's writer (be.wr)

	mu      sync.Mutex
	changed *sync.Cond // a unit completed, skipping started, a turn or a cancel ended, the backend failed
	// turn wakes the sessions waiting for their turn (acquire), apart from changed:
	// one of them when a turn ends (turn.go), every one when the backend fails or a
	// deadlock watch is due. A unit's replies do not wake them.
	turn      *sync.Cond
	turnWaits int // how often a session waited for its turn (tests)
	q         replyQueue
	st        txState // where the server's transaction stands, as replies show it
	unitsSent int     // units (up to Sync, Query, FunctionCall) sent
	predicted txState // the state the last unit sent ends in, if it succeeds
	unitsDone int     // units answered with ReadyForQuery
	mustWait  bool    // the next unit needs the outcome of the ones before
	skipping  bool    // an extended-protocol error: the server skips to the next Sync
	retry     bool    // a cancel hit the recovery: run it again
	// recovering: a failed autocommit unit's recovery was decided and is not done
	// (its messages may not be queued yet).
	recovering bool
	copyIn     bool       // the server is in COPY FROM STDIN
	starting   bool       // the answer of the lease's start is still to come (startahead.go)
	notes      []chanNote // LISTEN, UNLISTEN, NOTIFY of the unit or block running (notify.go)
	failure    error      // the backend failed; every session ends
	stopping   bool       // the lease stops the server pump
	finished   bool       // nothing touches the backend any more
	holder     *Session   // whose unit or block has the backend
	sessions   []*Session // attached
	held       *Session   // whose CancelRequest is held until the proxy's statements are done
	watching   bool       // a watch of the backend runs for the held request (watch.go)
	inflight   int        // CancelRequests being delivered
	cancels    sync.WaitGroup

	// doomed: the backend's transaction is lost (the backend ended, or the proxy lost
	// track of it); set before any client is told, so that routing can forget the
	// lease before the clients reconnect.
	doomed atomic.Bool

	served  chan error // the server pump's end
	scratch []byte     // encoding buffer of the server pump
}

// newTxConn starts serving sessions on be, whose transaction stands as be.st says;
// log is the lease's.
func newTxConn(guard *wire.Guard, log *zap.Logger, be *Backend) *txConn {
	c := &txConn{guard: guard, log: log, stats: guard.Stats, be: be, st: be.st, predicted: be.st, mustWait: true, served: make(chan error, 1),
		starting: be.starting()}
	c.changed = sync.NewCond(&c.mu)
	c.turn = sync.NewCond(&c.mu)
	go func() {
		err := c.containedPump()
		if !errors.Is(err, errStopped) {
			c.fail(err)
		}
		c.served <- err
	}()
	return c
}

// containedPump runs the server pump; a panic in it ends every session of the lease.
func (c *txConn) containedPump() (err error) {
	defer func() {
		if r := recover(); r != nil {
			c.guard.Recovered("tx server pump", r)
			err = c.panicked()
		}
	}()
	return c.serverPump()
}

// contain ends every session of the lease after a panic recovered in one of the
// lease's goroutines of kind where. Deferred; the goroutine then ends.
func (c *txConn) contain(where string) {
	if r := recover(); r != nil {
		c.guard.Recovered(where, r)
		_ = c.panicked()
	}
}

// panicked ends every session of the lease after a panic: the proxy no longer knows
// where the lease's transaction stands. Each client is told so with a FATAL XX000.
func (c *txConn) panicked() error {
	err := errors.New("internal error in pgtestproxy")
	c.mu.Lock()
	sessions := append([]*Session(nil), c.sessions...)
	c.mu.Unlock()
	for _, s := range sessions {
		s.toClientFatal(wire.InternalErrorResponse())
	}
	c.fail(err)
	return err
}

// join attaches a session.
func (c *txConn) join(s *Session) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.sessions = append(c.sessions, s)
}

// stop ends the server pump once no session is attached, and reports whether the
// backend is idle and fit for the next use.
func (c *txConn) stop() (clean bool) {
	c.mu.Lock()
	c.stopping = true
	c.mu.Unlock()
	wire.Interrupt(c.be.conn)
	err := <-c.served
	c.cancels.Wait()
	c.mu.Lock()
	for c.inflight > 0 {
		c.changed.Wait()
	}
	c.finished = true
	// Replies still owed would reach the backend's next user as its own (a stray
	// ReadyForQuery): a backend stopped with any is not fit.
	clean = errors.Is(err, errStopped) && c.failure == nil && c.q.len() == 0 && !c.recovering
	c.mu.Unlock()
	_ = c.be.conn.SetReadDeadline(time.Time{})
	c.be.st = c.st
	return clean
}

// acquire waits for s's turn on the backend; a wait that is a deadlock (deadlock.go)
// fails with a *deadlockError.
func (c *txConn) acquire(s *Session) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	s.waiting = true // until it sends (txClient.locked)
	var dw *deadlockWatch
	for c.holder != nil && c.holder != s && c.failure == nil {
		if dw == nil && !s.left { // a session leaving only cleans up (deadlock.go)
			dw = c.watchDeadlock()
			defer dw.timer.Stop()
		}
		if err := c.deadlocked(s, dw); err != nil {
			s.waiting, s.cancelFirst = false, false
			c.passTurnLocked()
			return err
		}
		c.waitTurnLocked()
	}
	if c.failure != nil {
		return c.failure
	}
	c.holder = s
	return nil
}

// detach removes a session that ended.
func (c *txConn) detach(s *Session) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for i, o := range c.sessions {
		if o == s {
			c.sessions = append(c.sessions[:i], c.sessions[i+1:]...)
			break
		}
	}
	if c.holder == s {
		c.holder = nil
		c.passTurnLocked()
	}
	c.changed.Broadcast()
}

// fail ends every session because of err: the backend can no longer serve them.
func (c *txConn) fail(err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.failure != nil || c.finished {
		return
	}
	c.doomed.Store(true)
	c.failure = err
	c.changed.Broadcast()
	c.turn.Broadcast()
	wire.Interrupt(c.be.conn)
	for _, s := range c.sessions {
		wire.Interrupt(s.client)
	}
}

// failed returns the backend's failure, if any.
func (c *txConn) failed() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.failure
}

// lost ends every session because the proxy no longer knows where its transaction
// stands; the clients are told so with a FATAL error instead of being served wrongly.
func (c *txConn) lost(what string, cause error) error {
	err := fmt.Errorf("%s: %w", what, cause)
	c.log.Warn("tx session lost its transaction", zap.Error(err))
	c.doomed.Store(true)
	c.mu.Lock()
	sessions := append([]*Session(nil), c.sessions...)
	c.mu.Unlock()
	for _, s := range sessions {
		s.toClientFatal(&pgproto3.ErrorResponse{Severity: "FATAL", SeverityUnlocalized: "FATAL", Code: pgerrcode.InternalError,
			Message: "pgtestproxy lost track of the session's transaction: " + err.Error(),
			Hint:    "The lease's database is retired; reconnect to get a fresh one."})
	}
	c.fail(err)
	return err
}

// owns reports whether any message of s is pending.
func (c *txConn) owns(s *Session) bool {
	for i := c.q.head; i < len(c.q.items); i++ {
		if c.q.items[i].owner == s {
			return true
		}
	}
	return false
}

// unitStart tells a session starting a unit whether it must wait for the units before,
// how many were sent, and the state predicted at the end of the last one.
func (c *txConn) unitStart() (wait bool, sent int, predicted txState) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.mustWait, c.unitsSent, c.predicted
}

// unitEnd records that s sent a unit ending in the predicted state st; wait says the
// next unit needs its outcome. Outside a transaction block, s's turn ends.
func (c *txConn) unitEnd(s *Session, wait bool, st txState) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.unitsSent++
	c.mustWait, c.predicted = wait, st
	if !st.block && c.holder == s {
		c.holder = nil
		c.passTurnLocked()
	}
}

// leaving marks s as a session whose client left.
func (c *txConn) leaving(s *Session) {
	c.mu.Lock()
	defer c.mu.Unlock()
	s.left = true
}

// allLeaving reports whether the clients of every attached session left.
func (c *txConn) allLeaving() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, s := range c.sessions {
		if !s.left {
			return false
		}
	}
	return true
}
