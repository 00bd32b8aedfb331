package proxy

import "context"

// send is the session's side of a client's CancelRequest (cancelRegistry): it cancels
// the client's statement running on the backend. A cancel that hit one of the proxy's
// own statements could cost the client work it was told is committed, so while any of
// them is pending the request is held, and delivered once none is and the client's
// statement still runs. With nothing running it does nothing, as PostgreSQL does for
// an idle backend.
func (s *txSession) send(ctx context.Context) error {
	s.mu.Lock()
	switch {
	case s.q.len() == 0 || s.failure != nil || s.finished:
		s.mu.Unlock()
		return nil
	case s.q.guards > 0:
		s.cancelled = true
		if s.q.guards == s.q.prefixes && !s.watching {
			s.watching = true
			s.cancels.Add(1)
			go s.watch()
		}
		s.mu.Unlock()
		return nil
	}
	s.inflight++
	s.mu.Unlock()
	return s.deliver(ctx)
}

// deliver sends a CancelRequest to the backend and waits until the server took it.
func (s *txSession) deliver(ctx context.Context) error {
	defer func() {
		s.mu.Lock()
		s.inflight--
		s.changed.Broadcast()
		s.mu.Unlock()
	}()
	return s.be.cancel.send(ctx)
}

// deliverLater delivers a held CancelRequest from its own goroutine. s.mu is held.
func (s *txSession) deliverLater() {
	s.inflight++
	s.cancels.Add(1)
	go func() {
		defer s.cancels.Done()
		ctx, cancel := context.WithTimeout(context.Background(), cancelTimeout)
		defer cancel()
		if err := s.deliver(ctx); err != nil {
			s.log.Warn("forward held cancel request")
		}
	}()
}
