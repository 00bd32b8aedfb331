package txmode

import (
	"context"

	"go.uber.org/zap"

	"github.com/pgtestproxy/pgtestproxy/proxy/internal/wire"
)

// cancel cancels s's statement. A cancel that hit one of the proxy's own statements
// could cost the client work it was told is committed, so while any of them is pending
// the request is held, and delivered once none is and s's statement still runs.
//
// A session waiting for its turn (another connection of its session key has the
// backend) has its statement cancelled once it runs: the request is held for it.
func (c *txConn) cancel(ctx context.Context, s *Session) error {
	c.mu.Lock()
	p := c.q.front()
	switch {
	case c.failure != nil || c.finished:
		c.mu.Unlock()
		return nil
	case s.waiting:
		s.cancelFirst = true
		c.mu.Unlock()
		return nil
	case p == nil || p.owner != s:
		c.mu.Unlock()
		return nil
	case c.q.guards > 0 || c.starting:
		c.holdLocked(s)
		c.mu.Unlock()
		return nil
	}
	c.inflight++
	c.mu.Unlock()
	return c.deliver(ctx)
}

// deliver sends a CancelRequest to the backend and waits until the server took it.
func (c *txConn) deliver(ctx context.Context) error {
	defer func() {
		c.mu.Lock()
		c.inflight--
		c.changed.Broadcast()
		c.mu.Unlock()
	}()
	return c.be.cancel.Send(ctx)
}

// deliverLater delivers a held CancelRequest from its own goroutine. c.mu is held.
func (c *txConn) deliverLater() {
	c.inflight++
	c.cancels.Add(1)
	go func() {
		defer c.cancels.Done()
		defer c.contain("tx cancel forwarder")
		ctx, cancel := context.WithTimeout(context.Background(), wire.CancelTimeout)
		defer cancel()
		if err := c.deliver(ctx); err != nil {
			c.log.Warn("forward held cancel request", zap.Error(err))
		}
	}()
}

// holdLocked holds a CancelRequest for s until the proxy's statements are done,
// watching the backend when it can tell from there. c.mu is held.
func (c *txConn) holdLocked(s *Session) {
	c.held = s
	if c.q.guards == c.q.prefixes && !c.watching && !c.starting {
		c.watching = true
		c.cancels.Add(1)
		go c.watch()
	}
}
