package txmode

// awaitUnits waits until the server answered the first n units, and returns the
// txState then. It returns skip = true instead when the server is skipping messages
// after an error and no Sync that would end it was sent: what the client pump sends
// next is skipped too, so nothing depends on the units' outcome. flush sends what the
// client pump wrote, which the units need.
func (c *txConn) awaitUnits(n int, flush func() error) (st txState, skip bool, err error) {
	if err := flush(); err != nil {
		return txState{}, false, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for {
		switch {
		case c.failure != nil:
			return txState{}, false, c.failure
		case c.skipping && c.q.syncs == 0:
			return c.st, true, nil
		case c.unitsDone >= n:
			return c.st, false, nil
		}
		c.changed.Wait()
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
