package proxy

import (
	"context"
	"sync"
	"time"

	"go.uber.org/zap"
)

// releaseTimeout bounds a provider's Release, which runs detached from any session.
const releaseTimeout = 30 * time.Second

// leaseKey identifies the lease that connections with a session key share.
type leaseKey struct {
	database string
	mode     Mode
	session  string
}

// sharedLease is a lease held by every open connection with the same leaseKey, and
// for Linger after the last one closes.
type sharedLease struct {
	ready chan struct{} // closed when the provider answered
	lease Lease
	err   error
	refs  int         // open connections holding the lease
	clean bool        // no connection reported a problem
	timer *time.Timer // linger timer while refs == 0
	gen   int         // which linger timer is current
}

// router hands leases to sessions: one per connection, or one per session key.
type router struct {
	provider LeaseProvider
	linger   time.Duration
	log      *zap.Logger
	stats    *counters

	mu      sync.Mutex
	shared  map[leaseKey]*sharedLease
	closing bool           // release at once instead of lingering
	pending sync.WaitGroup // linger timers scheduled and not yet done
}

func newRouter(p LeaseProvider, linger time.Duration, log *zap.Logger, stats *counters) *router {
	return &router{provider: p, linger: linger, log: log, stats: stats, shared: map[leaseKey]*sharedLease{}}
}

// leaseRef is one connection's hold on a lease. release must be called once the
// connection is done with it.
type leaseRef struct {
	r      *router
	lease  Lease
	shared *sharedLease // nil for a lease of the connection's own
	key    leaseKey
	once   sync.Once
}

// acquire returns a lease for req: a new one when session is empty, else the one
// shared by every connection with the same database, mode and session key.
func (r *router) acquire(ctx context.Context, req LeaseRequest, session string) (*leaseRef, error) {
	if session == "" {
		l, err := r.fromProvider(ctx, req, false)
		if err != nil {
			return nil, err
		}
		return &leaseRef{r: r, lease: l}, nil
	}
	key := leaseKey{database: req.Database, mode: req.Mode, session: session}
	r.mu.Lock()
	e := r.shared[key]
	if e != nil {
		e.refs++
		r.stopLinger(e)
		r.mu.Unlock()
		<-e.ready // bounded by the first connection's Acquire
		if e.err != nil {
			return nil, e.err
		}
		return &leaseRef{r: r, lease: e.lease, shared: e, key: key}, nil
	}
	e = &sharedLease{ready: make(chan struct{}), refs: 1, clean: true}
	r.shared[key] = e
	r.mu.Unlock()

	l, err := r.fromProvider(ctx, req, true)
	r.mu.Lock()
	e.lease, e.err = l, err
	if err != nil {
		delete(r.shared, key)
	}
	close(e.ready)
	r.mu.Unlock()
	if err != nil {
		return nil, err
	}
	return &leaseRef{r: r, lease: l, shared: e, key: key}, nil
}

// fromProvider acquires a lease; a tx-mode lease gets the proxy's tx-mode wrapping,
// shared says connections with a session key share it.
func (r *router) fromProvider(ctx context.Context, req LeaseRequest, shared bool) (Lease, error) {
	l, err := r.provider.Acquire(ctx, req)
	if err != nil {
		return nil, err
	}
	if req.Mode == ModeTx {
		l = newTxLease(l, r.log, shared)
	}
	r.stats.leasesTotal.Add(1)
	r.stats.leasesActive.Add(1)
	r.log.Debug("lease acquired", zap.String("template", req.Database),
		zap.String("mode", string(req.Mode)), zap.String("database", l.Database()))
	return l, nil
}

// stopLinger cancels e's linger timer, if any. r.mu must be held.
func (r *router) stopLinger(e *sharedLease) {
	if e.timer == nil {
		return
	}
	if e.timer.Stop() {
		r.pending.Done() // the timer will not run, so it will not call Done
	}
	e.timer = nil
}

// release gives up the connection's hold on the lease. clean is false when the
// connection saw its upstream fail.
func (ref *leaseRef) release(clean bool) {
	ref.once.Do(func() { ref.r.unref(ref, clean) })
}

func (r *router) unref(ref *leaseRef, clean bool) {
	e := ref.shared
	if e == nil {
		r.releaseNow(ref.lease, clean)
		return
	}
	r.mu.Lock()
	e.refs--
	e.clean = e.clean && clean
	if e.refs > 0 {
		r.mu.Unlock()
		return
	}
	if r.closing || r.linger == 0 {
		delete(r.shared, ref.key)
		r.mu.Unlock()
		r.releaseNow(e.lease, e.clean)
		return
	}
	e.gen++
	gen := e.gen
	r.pending.Add(1)
	e.timer = time.AfterFunc(r.linger, func() { r.expire(ref.key, e, gen) })
	r.mu.Unlock()
}

// expire ends a shared lease whose linger ran out, unless a connection took it again.
func (r *router) expire(key leaseKey, e *sharedLease, gen int) {
	defer r.pending.Done()
	r.mu.Lock()
	if e.refs > 0 || e.gen != gen || e.timer == nil {
		r.mu.Unlock()
		return
	}
	e.timer = nil
	delete(r.shared, key)
	r.mu.Unlock()
	r.releaseNow(e.lease, e.clean)
}

// releaseNow hands a lease back to the provider.
func (r *router) releaseNow(l Lease, clean bool) {
	ctx, cancel := context.WithTimeout(context.Background(), releaseTimeout)
	defer cancel()
	l.Release(ctx, clean)
	r.stats.leasesActive.Add(-1)
	r.log.Debug("lease released", zap.String("database", l.Database()), zap.Bool("clean", clean))
}

// close releases the lingering leases at once, makes later ends release at once, and
// waits for linger timers already running. Call it after every session ended.
func (r *router) close() {
	r.mu.Lock()
	r.closing = true
	var lingering []*sharedLease
	for key, e := range r.shared {
		if e.refs == 0 && e.timer != nil {
			r.stopLinger(e)
			delete(r.shared, key)
			lingering = append(lingering, e)
		}
	}
	r.mu.Unlock()
	for _, e := range lingering {
		r.releaseNow(e.lease, e.clean)
	}
	r.pending.Wait()
}
