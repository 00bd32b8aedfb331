package proxy

// awaitUnits waits until the server answered the first n units, and returns the
// txState then. It returns skip = true instead when the server is skipping messages
// after an error and no Sync that would end it was sent: what the client pump sends
// next is skipped too, so nothing depends on the units' outcome. flush sends what the
// client pump wrote, which the units need.
func (s *txSession) awaitUnits(n int, flush func() error) (st txState, skip bool, err error) {
	if err := flush(); err != nil {
		return txState{}, false, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for {
		switch {
		case s.failure != nil:
			return txState{}, false, s.failure
		case s.skipping && s.q.syncs == 0:
			return s.st, true, nil
		case s.unitsDone >= n:
			return s.st, false, nil
		}
		s.changed.Wait()
	}
}

// awaitCancels waits until no CancelRequest is on its way to the backend, so that a
// cancel meant for a statement that already ended cannot hit the proxy's savepoint
// statements that come next.
func (s *txSession) awaitCancels(flush func() error) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for s.inflight > 0 && s.failure == nil {
		s.mu.Unlock()
		err := flush()
		s.mu.Lock()
		if err != nil {
			return err
		}
		if s.inflight > 0 && s.failure == nil {
			s.changed.Wait()
		}
	}
	return s.failure
}

// pushed returns how many messages were queued so far.
func (s *txSession) pushed() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.q.pushed
}

// awaitCopyStart waits until the server answered the COPY queued as the at-th message
// (1-based) and reports whether it is in copy-in mode, where it ignores a Sync.
func (s *txSession) awaitCopyStart(at int, flush func() error) (copying bool, err error) {
	if err := flush(); err != nil {
		return false, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for {
		switch {
		case s.failure != nil:
			return false, s.failure
		case s.copyIn:
			return true, nil
		case s.q.popped >= at, s.skipping && s.q.syncs == 0:
			return false, nil // answered without copy-in mode, or skipped
		}
		s.changed.Wait()
	}
}
