package pool

import (
	"context"
	"fmt"
	"github.com/jackc/pgerrcode"
	"github.com/pgtestproxy/pgtestproxy/internal/leasemode"
	"github.com/pgtestproxy/pgtestproxy/internal/pgerr"
	"io"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"go.uber.org/zap"
)

// pollInterval is how often a waiting Acquire looks for clones made by other processes
// (clones this process makes wake it at once), while there are any (poll.go).
const pollInterval = 50 * time.Millisecond

// releaseTimeout bounds the catalog update Release makes.
const releaseTimeout = 10 * time.Second

// Lease is one clone handed out by Acquire, until Release.
type Lease struct {
	p        *Pool
	gen      *generation
	template string
	name     string
	mode     leasemode.Mode
	since    time.Time

	countedDB bool // counted in gen.leasedDB (reuserate.go)

	mu       sync.Mutex
	kept     io.Closer // left by the previous tx lease, until Kept takes it
	keep     io.Closer // to leave in the clone for the next tx lease
	released bool
	ending   bool // Ending was called (parked.go)
}

// Database returns the clone's database name.
func (l *Lease) Database() string { return l.name }

// Template returns the name of the template the clone was made from ("" = default).
func (l *Lease) Template() string { return l.template }

// Mode returns the lease's mode.
func (l *Lease) Mode() leasemode.Mode { return l.mode }

// ConnConfig returns a fresh copy of the upstream's connection settings (the pool's
// own credentials) pointed at the clone.
func (l *Lease) ConnConfig() *pgconn.Config {
	c := l.p.base.Config.Copy()
	c.Database = l.name
	return c
}

// Keep attaches c (in tx mode, the backend connection in the clone) to the clone: when
// the lease is released clean, the next tx lease of this clone in this process gets it
// from Kept; otherwise the pool closes it. A second Keep replaces (and closes) the first.
func (l *Lease) Keep(c io.Closer) {
	l.mu.Lock()
	prev := l.keep
	l.keep = c
	l.mu.Unlock()
	if prev != nil && prev != c {
		prev.Close()
	}
}

// Kept returns what the previous tx lease of this clone kept in it, or nil; the caller
// owns it from then on. A db-mode lease never has one.
func (l *Lease) Kept() io.Closer {
	l.mu.Lock()
	defer l.mu.Unlock()
	k := l.kept
	l.kept = nil
	return k
}

// markReleased ends the lease without touching the clone; it reports whether the lease
// was still out.
func (l *Lease) markReleased() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	was := !l.released
	l.released = true
	return was
}

// Release ends the lease. A db-mode clone is judged in the background once its
// backends have exited: back to the pool when clean is true and the server's evidence
// shows it unchanged (reuse.go), dropped otherwise. A tx-mode clone goes back to the
// pool when clean is true (with what Keep attached), and is dropped otherwise. Release
// is idempotent; ctx bounds only the catalog update, which has its own deadline too.
func (l *Lease) Release(ctx context.Context, clean bool) {
	if !l.markReleased() {
		return
	}
	defer l.p.ended(l)
	l.mu.Lock()
	kept, keep := l.kept, l.keep
	l.kept, l.keep = nil, nil
	l.mu.Unlock()
	if kept != nil && kept != keep {
		kept.Close() // not taken: nobody else will close it
	}
	p := l.p
	if l.mode == leasemode.Tx && clean && p.inUse(l.gen) && !l.gen.dead.Load() {
		if keep != nil && p.park(l, keep) {
			return
		}
		if p.putBack(ctx, l, keep) {
			return
		}
	} else if keep != nil {
		keep.Close()
	}
	if l.mode == leasemode.DB {
		if clean && p.inUse(l.gen) && !l.gen.dead.Load() && p.recycle(l) {
			return
		}
		p.counters.clonesNotReused.Add(1)
		if l.countedDB {
			l.gen.judged(false)
		}
	}
	p.retire(l)
}

// putBack returns a clean tx-mode clone to the ready pool with keep attached; it
// reports false when the clone must be retired instead.
func (p *Pool) putBack(ctx context.Context, l *Lease, keep io.Closer) bool {
	p.mu.Lock()
	if p.closed { // Close drops the clones of leases still out
		p.mu.Unlock()
		if keep != nil {
			keep.Close()
		}
		return true
	}
	delete(p.leases, l.name)
	var keptBy *int64
	if keep != nil {
		p.kept[l.name] = keep // before the row is ready, so our next claim finds it
		keptBy = &p.owner
	}
	p.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), releaseTimeout)
	defer cancel()
	tag, err := p.cat.Exec(ctx, `UPDATE migrated_dbs SET state = 'ready', kept_by = $2, mode = NULL, last_used = now()
		WHERE datname = $1 AND state = 'leased' AND owner = $3`, l.name, keptBy, p.owner)
	if err == nil && tag.RowsAffected() == 1 {
		if keep != nil {
			l.gen.signalTx() // kept for tx mode: db-mode waiters cannot take it
		} else {
			l.gen.signal()
		}
		return true
	}
	p.mu.Lock()
	if k := p.kept[l.name]; k != nil && k == keep {
		delete(p.kept, l.name)
	}
	p.leases[l.name] = l // retire takes it from here
	p.mu.Unlock()
	if keep != nil {
		keep.Close()
	}
	if err != nil {
		p.log.Warn("return clone to the pool", zap.String("clone", l.name), zap.Error(err))
	}
	return false
}

// retire drops a leased clone in the background.
func (p *Pool) retire(l *Lease) {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return // Close drops it
	}
	p.afterLease(l, func(ctx context.Context) { p.dropAll(ctx, []string{l.name}) })
}

// afterLease takes l's clone out of the leases and runs end on it in the background,
// the clone marked busy and Close waiting for it, within dropTimeout. p.mu is held, and
// the caller has checked that the pool is not closed; afterLease unlocks it.
func (p *Pool) afterLease(l *Lease, end func(ctx context.Context)) {
	delete(p.leases, l.name)
	p.busy[l.name]++
	p.wg.Add(1) // under mu with the closed check: Close waits for this
	p.mu.Unlock()
	go func() {
		defer p.wg.Done()
		defer p.unbusy(l.name)
		ctx, cancel := context.WithTimeout(context.Background(), dropTimeout)
		defer cancel()
		end(ctx)
	}()
}

// claimOrWait claims a ready clone of gen, waiting for the refill until timeout fires.
// It returns errTemplateChanged when tpl moved to another template while it waited
// (unless a clone of gen came first), so the caller waits on the new one instead.
func (p *Pool) claimOrWait(ctx context.Context, tpl *template, gen *generation, mode leasemode.Mode, timeout <-chan time.Time) (*Lease, error) {
	if l, err := p.claim(ctx, tpl, gen, mode); l != nil || err != nil {
		return l, err
	}
	gen.waiters.Add(1)
	defer p.kickRefill() // after the counts below: the refill sees this waiter gone
	defer gen.stopWaiting()
	if mode == leasemode.DB {
		gen.dbWaiters.Add(1)
		defer gen.dbWaiters.Add(-1)
	}
	p.kickRefill()
	changed := tpl.changes()
	nextHash := time.Now().Add(hashRecheck)
	var ticket *dbTicket // db mode queues (wake.go)
	if mode == leasemode.DB {
		ticket = &dbTicket{}
		defer func() {
			if gen.leaveDB(ticket) {
				gen.wakeNextDB() // a wake this waiter did not use
			}
		}()
	}
	try, woken, polled := true, false, false
	for {
		var ready <-chan struct{}
		if ticket != nil {
			ready = gen.queueDB(ticket, woken)
		} else {
			ready = gen.ready()
		}
		if gen.dead.Load() {
			return nil, errTemplateGone
		}
		if try {
			l, err := p.claim(ctx, tpl, gen, mode)
			if l != nil && ticket != nil && polled {
				gen.wakeNextDB() // what the poll found may be more than one clone
			}
			if l != nil || err != nil {
				return l, err
			}
		}
		rehash := time.Now().After(nextHash)
		if rehash {
			nextHash = time.Now().Add(hashRecheck)
		}
		if p.stale(ctx, tpl, gen, rehash) {
			return nil, errTemplateChanged
		}
		try, woken, polled = true, false, false
		select {
		case <-ready:
			woken = true
		case <-changed:
			changed = tpl.changes()
		case <-time.After(p.pollEvery()):
			// Polls are for what other processes make: the queue's first looks.
			polled = ticket == nil || gen.firstDB(ticket)
			try = polled
		case <-timeout:
			return nil, pgerr.New(pgerrcode.TooManyConnections, fmt.Sprintf(
				"no clone of template %q (%s) became ready within %v (pool size %d, at most %d clones)",
				tpl.name, gen.datname, p.cfg.AcquireTimeout, p.cfg.PoolSize, p.cfg.MaxClones))
		case <-ctx.Done():
			return nil, fmt.Errorf("wait for a clone of template %q: %w", tpl.name, ctx.Err())
		case <-p.closing:
			return nil, ErrClosed
		}
		if ticket != nil && !woken {
			select {
			case <-ready: // woken while another case was chosen: the wake is this waiter's to use
				woken, try = true, true
			default:
			}
		}
	}
}

// Claim statements: one round trip, FOR UPDATE SKIP LOCKED so concurrent claimers (in
// any process) never get the same row. tx mode prefers clones holding a backend this
// process kept; db mode never takes one (the clone and its backend stay for this
// process's tx leases, which would otherwise lose them to db-mode waiters under mixed
// load) and prefers clones holding none.
const (
	claimTx = `WITH c AS (
		SELECT datname FROM migrated_dbs WHERE template_db = $1 AND state = 'ready'
		ORDER BY kept_by IS NOT DISTINCT FROM $2 DESC, kept_by IS NULL DESC, created_at
		LIMIT 1 FOR UPDATE SKIP LOCKED)
	UPDATE migrated_dbs m SET state = 'leased', owner = $2, mode = $3, lease_template = $4, kept_by = NULL,
		leased_at = now(), last_used = now()
	FROM c WHERE m.datname = c.datname RETURNING m.datname`
	claimDB = `WITH c AS (
		SELECT datname FROM migrated_dbs WHERE template_db = $1 AND state = 'ready' AND kept_by IS DISTINCT FROM $2
		ORDER BY kept_by IS NULL DESC, created_at
		LIMIT 1 FOR UPDATE SKIP LOCKED)
	UPDATE migrated_dbs m SET state = 'leased', owner = $2, mode = $3, lease_template = $4, kept_by = NULL,
		leased_at = now(), last_used = now()
	FROM c WHERE m.datname = c.datname RETURNING m.datname`
)

// claim takes a ready clone of gen, or returns (nil, nil) when there is none.
func (p *Pool) claim(ctx context.Context, tpl *template, gen *generation, mode leasemode.Mode) (*Lease, error) {
	if mode == leasemode.Tx {
		if l := p.unparkSoon(ctx, tpl, gen); l != nil {
			return l, nil // its backend is open: no connection to budget, no catalog round trip
		}
	}
	if err := p.checkBudget(ctx); err != nil {
		return nil, err
	}
	q := claimDB
	if mode == leasemode.Tx {
		q = claimTx
	}
	if mode == leasemode.DB {
		p.counters.dbClaims.Add(1)
	}
	var name string
	err := p.cat.QueryRow(ctx, q, gen.datname, p.owner, string(mode), tpl.name).Scan(&name)
	if err == pgx.ErrNoRows {
		return nil, nil
	}
	if err != nil {
		return nil, p.upstreamErr(fmt.Sprintf("claim a clone of template %q", tpl.name), err)
	}
	p.budget.granted.Add(1)
	l := &Lease{p: p, gen: gen, template: tpl.name, name: name, mode: mode, since: time.Now()}
	p.mu.Lock()
	k := p.kept[name]
	delete(p.kept, name)
	if mode == leasemode.Tx {
		delete(p.pristine, name) // a tx lease's reset is not a db lease's evidence
	} else if _, ok := p.pristine[name]; ok {
		l.countedDB = true
		gen.leasedDB.Add(1)
	}
	closed := p.closed
	if !closed {
		p.leases[name] = l
	}
	p.mu.Unlock()
	if closed { // lost a race with Close: nobody will drop it now but the next process
		if k != nil {
			k.Close()
		}
		return nil, ErrClosed
	}
	if mode == leasemode.Tx {
		l.kept = k
	} else if k != nil {
		k.Close() // a db-mode lease must not find someone else's backend in its database
	}
	p.kickRefill()
	return l, nil
}
