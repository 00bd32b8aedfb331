package proxy

import (
	"context"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/pgtestproxy/pgtestproxy/proxy/internal/wire"
)

// Connecting ahead (db mode). A db-mode connection without a session key waits for
// two things before its first query: the provider's lease (a catalog round trip) and
// its backend's start on the clone (a fork and authentication), which together cost
// more than a plain server's connect. With Config.ConnectAhead the db runner does both
// ahead of the client: for each recent (database, user, startup parameters) of such
// connections it holds one spare, a lease acquired without waiting (ReadyProvider) and
// a backend connected to it with exactly the parameters that client's connection
// would have had. The next connection with the same ones takes the spare, and only
// its own hop to the proxy is left; taking it (or finding none) starts the next spare
// in the background. The client's backend is then one that started before it came:
// it has run nothing, its startup parameters are the client's (so RESET and
// pg_settings.source are as on a plain server), its PID is the real one; only
// pg_stat_activity.backend_start is earlier.
//
// A spare is handed out only while it is current (CurrentLease: a migration edit
// makes it stale) and its backend's socket holds nothing unread and has not ended (a
// restarted upstream, a terminated backend); otherwise it is released and the client
// connects as without one. Spares not taken within aheadIdle are released, so a
// stopped suite holds none for long; at most maxAheadSlots parameter sets have one, so
// clients that vary their parameters on every connection cost at most that many. A
// spare is a lease like any: the provider counts it (SHOW LEASES lists it with no
// client) and judges its clone when it is released (unchanged: back in the pool).
type ahead struct {
	d        *dbRunner
	provider ReadyProvider
	idle     time.Duration // how long an untaken spare is held

	mu     sync.Mutex
	slots  map[aheadKey]*aheadSlot
	closed bool
	wg     sync.WaitGroup // fills and expiry timers in flight
}

const (
	// aheadIdle is how long a spare waits for its next client before it is released.
	aheadIdle = 30 * time.Second
	// maxAheadSlots bounds the parameter sets with a spare.
	maxAheadSlots = 8
	// aheadTimeout bounds making one spare.
	aheadTimeout = 30 * time.Second
)

// aheadKey is what a connection's backend depends on: the database asked for, the
// user, and the startup parameters (sorted name=value pairs).
type aheadKey struct{ database, user, startup string }

func aheadKeyOf(p *clientParams) aheadKey {
	var b strings.Builder
	for _, k := range slices.Sorted(maps.Keys(p.startup.Runtime)) {
		b.WriteString(k)
		b.WriteByte('=')
		b.WriteString(p.startup.Runtime[k])
		b.WriteByte(0)
	}
	return aheadKey{database: p.database, user: p.user, startup: b.String()}
}

// aheadSlot holds the spare of one key: none while it is being made or after one was
// taken.
type aheadSlot struct {
	spare   *spare
	filling bool
	timer   *time.Timer // releases the spare after idle
}

// spare is a lease with its backend connected, waiting for a client.
type spare struct {
	lease Lease
	up    *wire.Upstream
	took  time.Duration // how long the client waited for it (set by take)
}

func newAhead(d *dbRunner, rp ReadyProvider) *ahead {
	idle := aheadIdle
	if d.s.cfg.aheadIdle > 0 {
		idle = d.s.cfg.aheadIdle
	}
	return &ahead{d: d, provider: rp, idle: idle, slots: map[aheadKey]*aheadSlot{}}
}

// take returns the spare for p's connection, or nil when there is none it can have,
// and starts making the next one.
func (a *ahead) take(p *clientParams) *spare {
	began := time.Now()
	key := aheadKeyOf(p)
	a.mu.Lock()
	if a.closed || a.d.s.shutting.Load() {
		a.mu.Unlock()
		return nil
	}
	sl := a.slots[key]
	if sl == nil {
		if len(a.slots) >= maxAheadSlots {
			a.mu.Unlock()
			return nil
		}
		sl = &aheadSlot{}
		a.slots[key] = sl
	}
	sp := sl.spare
	if sp != nil {
		sl.spare = nil
		a.stats().AheadReady.Add(-1)
	}
	a.stopTimer(sl)
	if !sl.filling {
		sl.filling = true
		a.wg.Add(1)
		go a.fill(key, sl, p)
	}
	a.mu.Unlock()
	if sp == nil {
		return nil
	}
	if ok, broken := a.usable(sp); !ok {
		a.discard(sp, !broken)
		return nil
	}
	sp.took = time.Since(began)
	a.stats().AheadTaken.Add(1)
	return sp
}

// usable reports whether sp can serve a client now: its backend has sent nothing and
// not gone (else it is broken), and its lease is current.
func (a *ahead) usable(sp *spare) (ok, broken bool) {
	if data, closed := wire.Unread(sp.up.Conn); data || closed {
		return false, true
	}
	ctx, cancel := context.WithTimeout(a.d.s.baseCtx, aheadTimeout)
	defer cancel()
	cl, ok := sp.lease.(CurrentLease)
	return ok && cl.Current(ctx), false
}

// fill makes the spare of key's slot with the parameters of p's connection.
func (a *ahead) fill(key aheadKey, sl *aheadSlot, p *clientParams) {
	defer a.wg.Done()
	sp, err := a.make(p)
	if err != nil {
		a.d.s.log.Debug("connect a lease ahead", zap.String("database", p.database), zap.Error(err))
	}
	a.mu.Lock()
	sl.filling = false
	if sp == nil || a.closed || a.slots[key] != sl {
		if a.slots[key] == sl && sl.spare == nil {
			delete(a.slots, key) // the next connection with key tries again
		}
		a.mu.Unlock()
		if sp != nil {
			a.discard(sp, true)
		}
		return
	}
	sl.spare = sp
	a.stats().AheadReady.Add(1)
	a.wg.Add(1)
	sl.timer = time.AfterFunc(a.idle, func() { a.expire(key, sl, sp) })
	a.mu.Unlock()
}

// make acquires a ready lease for p's request and connects to it as p's connection
// would; it returns nil when no lease was ready.
func (a *ahead) make(p *clientParams) (*spare, error) {
	ctx, cancel := context.WithTimeout(a.d.s.baseCtx, aheadTimeout)
	defer cancel()
	l, err := a.provider.AcquireReady(ctx, p.request())
	if l == nil || err != nil {
		return nil, err
	}
	up, err := a.d.connect(ctx, l, p)
	if err != nil {
		rctx, rcancel := context.WithTimeout(context.Background(), releaseTimeout)
		defer rcancel()
		l.Release(rctx, false)
		return nil, err
	}
	return &spare{lease: l, up: up}, nil
}

// expire releases sp when it is still its slot's spare after idle.
func (a *ahead) expire(key aheadKey, sl *aheadSlot, sp *spare) {
	defer a.wg.Done()
	a.mu.Lock()
	if sl.spare != sp {
		a.mu.Unlock()
		return
	}
	sl.spare, sl.timer = nil, nil
	a.stats().AheadReady.Add(-1)
	if a.slots[key] == sl && !sl.filling {
		delete(a.slots, key)
	}
	a.mu.Unlock()
	a.discard(sp, true)
}

// stopTimer stops sl's expiry timer. a.mu must be held.
func (a *ahead) stopTimer(sl *aheadSlot) {
	if sl.timer != nil && sl.timer.Stop() {
		a.wg.Done() // expire will not run
	}
	sl.timer = nil
}

// discard ends sp's backend and releases its lease; clean says nothing went wrong
// with the backend.
func (a *ahead) discard(sp *spare, clean bool) {
	if clean {
		_ = sp.up.Conn.SetWriteDeadline(time.Now().Add(wire.GoodbyeWriteTimeout))
		_, _ = sp.up.Conn.Write([]byte{'X', 0, 0, 0, 4}) // Terminate: the backend ends without a complaint
	}
	_ = sp.up.Conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), releaseTimeout)
	defer cancel()
	sp.lease.Release(ctx, clean)
}

func (a *ahead) stats() *wire.Counters { return &a.d.s.stats }

// close releases every spare and waits for the ones being made, which it releases too.
func (a *ahead) close() {
	a.mu.Lock()
	a.closed = true
	var spares []*spare
	for key, sl := range a.slots {
		a.stopTimer(sl)
		if sl.spare != nil {
			spares = append(spares, sl.spare)
			sl.spare = nil
			a.stats().AheadReady.Add(-1)
		}
		delete(a.slots, key)
	}
	a.mu.Unlock()
	for _, sp := range spares {
		a.discard(sp, true)
	}
	a.wg.Wait()
}

// ready reports how many spares wait for a client (for tests).
func (a *ahead) ready() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	n := 0
	for _, sl := range a.slots {
		if sl.spare != nil {
			n++
		}
	}
	return n
}
