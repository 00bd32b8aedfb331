package pool

import (
	"context"
	"time"

	"go.uber.org/zap"
)

// Draining at Close. Close stops new work at once (refill, builds, heartbeats end with
// p.ctx), but the drops already queued (a trim after a burst, the drops of released
// leases, retried drops) run on p.dropCtx, which Close cancels only once they are done
// or drainTimeout has passed: a clean stop leaves no clone half-dropped for the next
// process's GC. A DROP DATABASE already sent runs to its end either way (clone.go).

// drainTimeout bounds how long Close waits for queued drops.
const drainTimeout = 15 * time.Second

// drain waits for the background work Close joins, cancelling the drops' context
// when they take longer than drainTimeout.
func (p *Pool) drain() {
	done := make(chan struct{})
	go func() {
		p.wg.Wait()
		close(done)
	}()
	t := time.NewTimer(drainTimeout)
	defer t.Stop()
	select {
	case <-done:
	case <-t.C:
		p.log.Warn("queued drops still running at close; leaving the rest to the next GC", zap.Duration("waited", drainTimeout))
		p.dropCancel()
		<-done
	}
	p.dropCancel()
}

// dropContext returns a context for a background drop: it ends with the drain, not
// with the pool's other work.
func (p *Pool) dropContext() (context.Context, context.CancelFunc) {
	return context.WithTimeout(p.dropCtx, dropTimeout)
}
