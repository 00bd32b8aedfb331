package txmode

import (
	"time"

	"github.com/pgtestproxy/pgtestproxy/proxy/internal/wire"
)

// awaitUnits waits until the server answered the first n units, and returns the
// txState then. It returns skip = true instead when the server is skipping messages
// after an error and no Sync that would end it was sent: what the client pump sends
// next is skipped too, so nothing depends on the units' outcome. flush sends what the
// client pump wrote, which the units need.
//
// While it waits for a statement of s's own, s's client may leave (the client queued
// another statement behind it, then went away): it returns errClientDone then, so that
// the session cancels what runs instead of waiting for it.
func (c *txConn) awaitUnits(s *Session, n int, flush func() error) (st txState, skip bool, err error) {
	if err := flush(); err != nil {
		return txState{}, false, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	watching := false
	for {
		switch {
		case c.failure != nil:
			return txState{}, false, c.failure
		case c.skipping && c.q.syncs == 0:
			return c.st, true, nil
		case c.unitsDone >= n:
			return c.st, false, nil
		case s.departed && !s.left:
			s.waiting = false // the unit it waited to send is dropped
			return txState{}, false, errClientDone
		}
		if !watching && !s.left && c.owns(s) { // only its own statement can keep it waiting long
			watching = true
			stop := s.watchDeparture()
			defer func() {
				c.mu.Unlock()
				stop()
				c.mu.Lock()
			}()
		}
		c.changed.Wait()
	}
}

// watchDeparture reads ahead from the client while its pump waits, and marks the
// session departed (waking the waiters) when the client's stream ends: it closed
// its connection, after a Terminate or not. The pump must not read from the client
// until stop returned. What the watch read stays buffered for the pump.
func (s *Session) watchDeparture() (stop func()) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		r := s.crd.r
		for r.Buffered() < r.Size() {
			if _, err := r.Peek(r.Buffered() + 1); err != nil {
				if !wire.IsInterrupted(err) {
					c := s.c
					c.mu.Lock()
					s.departed = true
					c.changed.Broadcast()
					c.mu.Unlock()
				}
				return
			}
		}
	}()
	return func() {
		wire.Interrupt(s.client)
		<-done
		c := s.c
		c.mu.Lock()
		defer c.mu.Unlock()
		if c.failure == nil { // else fail interrupted the client for good
			_ = s.client.SetReadDeadline(time.Time{})
		}
	}
}

// awaitCancels waits until no CancelRequest is on its way to the backend, so that a
// cancel meant for a statement that already ended cannot hit what comes next: the
// proxy's savepoint statements or another unit.
func (c *txConn) awaitCancels(flush func() error) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	for c.inflight > 0 && c.failure == nil {
		c.mu.Unlock()
		err := flush()
		c.mu.Lock()
		if err != nil {
			return err
		}
		if c.inflight > 0 && c.failure == nil {
			c.changed.Wait()
		}
	}
	return c.failure
}

// pushed returns how many messages were queued so far.
func (c *txConn) pushed() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.q.pushed
}

// awaitCopyStart waits until the server answered the COPY queued as the at-th message
// (1-based) and reports whether it is in copy-in mode, where it ignores a Sync.
func (c *txConn) awaitCopyStart(at int, flush func() error) (copying bool, err error) {
	if err := flush(); err != nil {
		return false, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for {
		switch {
		case c.failure != nil:
			return false, c.failure
		case c.copyIn:
			return true, nil
		case c.q.popped >= at, c.skipping && c.q.syncs == 0:
			return false, nil // answered without copy-in mode, or skipped
		}
		c.changed.Wait()
	}
}
