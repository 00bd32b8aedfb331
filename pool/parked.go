package pool

import (
	"context"
	"io"
	"time"

	"go.uber.org/zap"

	"github.com/pgtestproxy/pgtestproxy/internal/leasemode"
)

// parkedClone is a tx-mode clone between two leases of this process: released clean,
// with the backend its last lease kept in it.
type parkedClone struct {
	name string
	keep io.Closer
}

// Parking. A tx-mode clone released clean with a kept backend does not go back to the
// catalog: its row stays leased by this process (state leased, mode tx, owner this
// pool), so no other process can ever take it, and it waits in this process for the
// next tx lease of its template, which takes it without a catalog round trip. Up to
// PoolSize clones of a template are parked; a release beyond that returns its clone to
// the catalog as before (ready, kept_by this pool). The refill counts parked clones as
// the tx-mode leases they are in the catalog, which come back, so they count towards
// PoolSize exactly as the ready clones with a kept backend they replace did. The
// owner's heartbeats cover them: when this process dies, other processes reclaim and
// drop them as they do its leases. Close returns them to the catalog as ready.

// park parks l's clone with keep; it reports false when the clone is not parked (the
// template has PoolSize parked already, was replaced or vanished, or the pool is
// closing). The check is under p.mu, as dropParked's take is: a template replaced after
// it has its parked clones dropped by the retireReady that follows.
func (p *Pool) park(l *Lease, keep io.Closer) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed || len(p.parked[l.gen]) >= p.cfg.PoolSize || !p.inUse(l.gen) || l.gen.dead.Load() {
		return false
	}
	if p.parked == nil {
		p.parked = make(map[*generation][]parkedClone)
	}
	delete(p.leases, l.name)
	p.parked[l.gen] = append(p.parked[l.gen], parkedClone{name: l.name, keep: keep})
	l.gen.signalTx()
	return true
}

// unpark leases the clone of gen parked last (its backend is the warmest), or returns
// nil when none is parked.
func (p *Pool) unpark(tpl *template, gen *generation) *Lease {
	p.mu.Lock()
	defer p.mu.Unlock()
	list := p.parked[gen]
	if p.closed || len(list) == 0 || gen.dead.Load() {
		return nil
	}
	pc := list[len(list)-1]
	p.parked[gen] = list[:len(list)-1]
	l := &Lease{p: p, gen: gen, template: tpl.name, name: pc.name, mode: leasemode.Tx, since: time.Now(), kept: pc.keep}
	p.leases[pc.name] = l
	return l
}

// dropParked retires the clones of gen parked in this process (its template was
// replaced or vanished).
func (p *Pool) dropParked(gen *generation) {
	p.mu.Lock()
	list := p.parked[gen]
	delete(p.parked, gen)
	ls := make([]*Lease, 0, len(list))
	for _, pc := range list {
		l := &Lease{p: p, gen: gen, name: pc.name, mode: leasemode.Tx, released: true}
		p.leases[pc.name] = l // retire takes it from here
		ls = append(ls, l)
	}
	p.mu.Unlock()
	for i, l := range ls {
		list[i].keep.Close()
		p.retire(l)
	}
}

// endingWait bounds how long a tx-mode claim that finds no parked clone waits for a
// lease of the same template whose holder is resetting it (Ending) to be parked,
// rather than taking a clone without a backend (whose first lease then starts one,
// and which the refill replaces with a new clone).
const endingWait = 50 * time.Millisecond

// endings counts, for one template, the tx leases being reset for the next lease
// (Ending) and the claims waiting for one of them.
type endings struct{ leases, waiting int }

// Ending says that the lease's holder is resetting the clone's backend for the next
// lease and will release it soon: a tx-mode Acquire of the same template that finds
// no parked clone meanwhile waits (endingWait at most) for this one.
func (l *Lease) Ending() {
	l.mu.Lock()
	was := l.ending || l.released || l.mode != leasemode.Tx
	l.ending = true
	l.mu.Unlock()
	if was {
		return
	}
	p := l.p
	p.mu.Lock()
	p.endingsOf(l.gen).leases++
	p.mu.Unlock()
}

// endingsOf returns gen's endings, made when missing. p.mu is held.
func (p *Pool) endingsOf(gen *generation) *endings {
	if p.ending == nil {
		p.ending = make(map[*generation]*endings)
	}
	e := p.ending[gen]
	if e == nil {
		e = &endings{}
		p.ending[gen] = e
	}
	return e
}

// ended, at Release, undoes Ending and wakes the claims waiting for it.
func (p *Pool) ended(l *Lease) {
	l.mu.Lock()
	was := l.ending
	l.ending = false
	l.mu.Unlock()
	if !was {
		return
	}
	p.mu.Lock()
	p.endingsOf(l.gen).leases--
	p.mu.Unlock()
	l.gen.signalTx()
}

// unparkSoon is unpark, waiting (endingWait at most) while a lease of gen is ending.
func (p *Pool) unparkSoon(ctx context.Context, tpl *template, gen *generation) *Lease {
	var timeout <-chan time.Time
	for {
		ready := gen.ready()
		if l := p.unpark(tpl, gen); l != nil {
			return l
		}
		p.mu.Lock()
		e := p.endingsOf(gen)
		if e.leases <= 0 {
			p.mu.Unlock()
			return nil
		}
		e.waiting++
		p.mu.Unlock()
		if timeout == nil {
			t := time.NewTimer(endingWait)
			defer t.Stop()
			timeout = t.C
		}
		expired := false
		select {
		case <-ready:
		case <-timeout:
			expired = true
		case <-ctx.Done():
			expired = true
		}
		p.mu.Lock()
		e.waiting--
		p.mu.Unlock()
		if expired {
			return nil
		}
	}
}

// parkedNames returns the clones parked in this process, by template database.
func (p *Pool) parkedNames() map[string][]string {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make(map[string][]string, len(p.parked))
	for g, list := range p.parked {
		for _, pc := range list {
			out[g.datname] = append(out[g.datname], pc.name)
		}
	}
	return out
}

// unparkAll, at Close, closes the parked clones' backends and returns the clones to
// the catalog as ready, for the next process.
func (p *Pool) unparkAll(ctx context.Context) {
	p.mu.Lock()
	parked := p.parked
	p.parked = nil
	p.mu.Unlock()
	var names []string
	for _, list := range parked {
		for _, pc := range list {
			pc.keep.Close()
			names = append(names, pc.name)
		}
	}
	if len(names) == 0 {
		return
	}
	if _, err := p.cat.Exec(ctx, `UPDATE migrated_dbs SET state = 'ready', mode = NULL, kept_by = NULL, last_used = now()
		WHERE datname = ANY($1) AND state = 'leased' AND owner = $2`, names, p.owner); err != nil {
		p.log.Warn("return parked clones to the pool at close", zap.Strings("clones", names), zap.Error(err))
	}
}
