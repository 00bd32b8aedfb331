package proxy

import (
	"context"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/pgtestproxy/pgtestproxy/proxy/internal/wire"
)

// releaseTimeout bounds a provider's Release, which runs detached from any session.
const releaseTimeout = 30 * time.Second

// sharedLease is a lease held by every open connection with the same LeaseRequest, and
// for Linger after the last one closes.
type sharedLease[L heldLease] struct {
	ready chan struct{} // closed when the provider answered
	lease L
	err   error
	refs  int         // open connections holding the lease
	clean bool        // no connection reported a problem
	timer *time.Timer // linger timer while refs == 0
	gen   int         // which linger timer is current
}

// heldLease is what a router hands out: the provider's lease in the form a session
// runner uses it.
type heldLease interface {
	Database() string
	Release(ctx context.Context, clean bool)
}

// router hands leases to sessions: one per connection, or one per session key
// (LeaseRequest.Session). It knows no lease mode: each session runner has a router of
// its own whose wrap gives the provider's lease the runner's form (shared says
// connections with a session key share it).
type router[L heldLease] struct {
	provider LeaseProvider
	wrap     func(l Lease, shared bool) L
	linger   time.Duration
	log      *zap.Logger
	stats    *wire.Counters
	mode     *wire.ModeCounters // the runner's lease mode's share of stats
	book     *leaseBook

	mu      sync.Mutex
	shared  map[LeaseRequest]*sharedLease[L]
	closing bool           // release at once instead of lingering
	pending sync.WaitGroup // linger timers scheduled and not yet done
}

func newRouter[L heldLease](p LeaseProvider, wrap func(Lease, bool) L, linger time.Duration, log *zap.Logger,
	stats *wire.Counters, mode *wire.ModeCounters, book *leaseBook) *router[L] {
	return &router[L]{provider: p, wrap: wrap, linger: linger, log: log, stats: stats, mode: mode, book: book,
		shared: map[LeaseRequest]*sharedLease[L]{}}
}

// leaseRef is one connection's hold on a lease. release must be called once the
// connection is done with it.
type leaseRef[L heldLease] struct {
	r      *router[L]
	lease  L
	shared *sharedLease[L] // nil for a lease of the connection's own
	key    LeaseRequest
	once   sync.Once
}

// acquire returns a lease for req: a new one when req.Session is empty, else the one
// shared by every connection with the same database, mode and session key. A shared
// lease that is lost is forgotten: the connection gets a fresh one.
func (r *router[L]) acquire(ctx context.Context, req LeaseRequest) (*leaseRef[L], error) {
	if req.Session == "" {
		l, err := r.fromProvider(ctx, req, false)
		if err != nil {
			return nil, err
		}
		return &leaseRef[L]{r: r, lease: l}, nil
	}
	for {
		ref, err := r.join(req)
		if ref != nil || err != nil {
			return ref, err
		}
		if ref, err, ok := r.start(ctx, req); ok {
			return ref, err
		}
	}
}

// join takes a hold on the shared lease of key, if there is one that is not lost.
func (r *router[L]) join(key LeaseRequest) (*leaseRef[L], error) {
	r.mu.Lock()
	e := r.shared[key]
	if e == nil {
		r.mu.Unlock()
		return nil, nil
	}
	e.refs++
	r.stopLinger(e)
	r.mu.Unlock()
	<-e.ready // bounded by the first connection's Acquire
	if e.err != nil {
		return nil, e.err
	}
	ref := &leaseRef[L]{r: r, lease: e.lease, shared: e, key: key}
	if isLost(e.lease) {
		ref.release(false) // forgets the lease; the caller starts a fresh one
		return nil, nil
	}
	return ref, nil
}

// start acquires a shared lease for key from the provider. ok is false when another
// connection started one meanwhile: join that.
func (r *router[L]) start(ctx context.Context, key LeaseRequest) (ref *leaseRef[L], err error, ok bool) {
	r.mu.Lock()
	if r.shared[key] != nil {
		r.mu.Unlock()
		return nil, nil, false
	}
	e := &sharedLease[L]{ready: make(chan struct{}), refs: 1, clean: true}
	r.shared[key] = e
	r.mu.Unlock()

	l, err := r.fromProvider(ctx, key, true)
	r.mu.Lock()
	e.lease, e.err = l, err
	if err != nil {
		r.forgetLocked(key, e)
	}
	close(e.ready)
	r.mu.Unlock()
	if err != nil {
		return nil, err, true
	}
	return &leaseRef[L]{r: r, lease: l, shared: e, key: key}, nil, true
}

// isLost reports whether a lease can serve no connection any more (a tx-mode lease
// whose backend ended).
func isLost[L heldLease](l L) bool {
	ll, ok := any(l).(interface{ Lost() bool })
	return ok && ll.Lost()
}

// forgetLocked removes e from the shared leases, unless another lease took its key
// already. r.mu must be held.
func (r *router[L]) forgetLocked(key LeaseRequest, e *sharedLease[L]) {
	if r.shared[key] == e {
		delete(r.shared, key)
	}
}

// fromProvider acquires a lease and wraps it; shared says connections with a
// session key share it.
func (r *router[L]) fromProvider(ctx context.Context, req LeaseRequest, shared bool) (L, error) {
	mc := r.mode
	start := time.Now()
	pl, err := r.provider.Acquire(ctx, req)
	mc.Acquire.Observe(time.Since(start))
	if err != nil {
		mc.AcquireErrors.Add(1)
		var none L
		return none, err
	}
	return r.counted(pl, req, shared), nil
}

// adopt gives a connection of its own a lease acquired for it elsewhere (connected
// ahead), took being how long the connection waited for it.
func (r *router[L]) adopt(pl Lease, req LeaseRequest, took time.Duration) *leaseRef[L] {
	r.mode.Acquire.Observe(took)
	return &leaseRef[L]{r: r, lease: r.counted(pl, req, false)}
}

// counted wraps a lease from the provider and counts it as acquired.
func (r *router[L]) counted(pl Lease, req LeaseRequest, shared bool) L {
	mc := r.mode
	l := r.wrap(pl, shared)
	r.stats.LeasesTotal.Add(1)
	r.stats.LeasesActive.Add(1)
	mc.LeasesTotal.Add(1)
	mc.LeasesActive.Add(1)
	r.book.add(l.Database(), req)
	r.log.Debug("lease acquired", zap.String("database", req.Database), zap.String("mode", string(req.Mode)),
		zap.String("session_key", req.Session), zap.String("clone", l.Database()))
	return l
}

// stopLinger cancels e's linger timer, if any. r.mu must be held.
func (r *router[L]) stopLinger(e *sharedLease[L]) {
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
func (ref *leaseRef[L]) release(clean bool) {
	ref.once.Do(func() { ref.r.unref(ref, clean) })
}

func (r *router[L]) unref(ref *leaseRef[L], clean bool) {
	e := ref.shared
	if e == nil {
		r.releaseNow(ref.lease, clean)
		return
	}
	lost := isLost(e.lease)
	r.mu.Lock()
	e.refs--
	e.clean = e.clean && clean && !lost
	if lost {
		// Routing forgets a lost lease at once: the key's next connection starts a
		// fresh one, and no connection arriving meanwhile keeps the lost one alive.
		r.forgetLocked(ref.key, e)
	}
	if e.refs > 0 {
		r.mu.Unlock()
		return
	}
	if r.closing || r.linger == 0 || lost {
		r.forgetLocked(ref.key, e)
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
func (r *router[L]) expire(key LeaseRequest, e *sharedLease[L], gen int) {
	defer r.pending.Done()
	r.mu.Lock()
	if e.refs > 0 || e.gen != gen || e.timer == nil {
		r.mu.Unlock()
		return
	}
	e.timer = nil
	r.forgetLocked(key, e)
	r.mu.Unlock()
	r.releaseNow(e.lease, e.clean)
}

// releaseNow hands a lease back to the provider.
func (r *router[L]) releaseNow(l L, clean bool) {
	ctx, cancel := context.WithTimeout(context.Background(), releaseTimeout)
	defer cancel()
	r.book.remove(l.Database())
	l.Release(ctx, clean)
	r.stats.LeasesActive.Add(-1)
	r.mode.LeasesActive.Add(-1)
	r.log.Debug("lease released", zap.String("clone", l.Database()), zap.Bool("clean", clean))
}

// close releases the lingering leases at once, makes later ends release at once, and
// waits for linger timers already running. Call it after every session ended.
func (r *router[L]) close() {
	r.mu.Lock()
	r.closing = true
	var lingering []*sharedLease[L]
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
