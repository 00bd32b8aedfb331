package pool

import (
	"context"
	"errors"
	"time"

	"go.uber.org/zap"
)

// reuseExitWait bounds the wait for a released db-mode lease's backends to exit before
// its clone is judged (their statistics are flushed as they exit); a backend still
// there after it means the clone is dropped. An exiting backend is gone within
// milliseconds on an idle server, but on a loaded one (tests under -race on two
// cores) it can take seconds, and the wait costs nothing but the clone's absence from
// the ready pool meanwhile.
const reuseExitWait = 5 * time.Second

// warmAndRecord warms a new clone of gen (see warm) unless a client already waits for
// one, and, when clones can be reused, records its evidence. The in-clone part is read
// through the warming connection of gen's first clone and is the same for every later
// one (a copy of the sealed template, under a new database oid, so with no table
// statistics yet); the cluster part is read for each clone.
//
// A clone a client waits for goes to it unwarmed: the warming connection would delay
// it by a backend's start and end (more than the client's first connection saves) and,
// for every clone of a suite that outruns the refill, costs the server a backend start
// that the clone's first client makes anyway.
func (p *Pool) warmAndRecord(ctx context.Context, gen *generation, name string) {
	warm := func() {
		if gen.waiters.Load() == 0 {
			p.warm(ctx, name)
		}
	}
	if !p.reusable() {
		warm()
		return
	}
	inside := gen.inside.Load()
	var err error
	if inside == nil {
		var in string
		if in, err = p.insideEvidence(ctx, name); err == nil {
			gen.inside.CompareAndSwap(nil, &in)
			inside = &in
		}
	} else {
		warm()
	}
	outside := ""
	if err == nil {
		outside, err = p.clusterEvidence(ctx, name)
	}
	if err != nil {
		if errors.Is(err, errNoTrackCounts) {
			p.noCounts.Do(func() {
				p.log.Warn("track_counts is off on the upstream: db-mode clones cannot be judged unmodified, so each is dropped after its lease",
					zap.String("clone", name))
			})
		} else {
			p.log.Debug("read a new clone's evidence; it will be dropped after its lease", zap.String("clone", name), zap.Error(err))
		}
		return
	}
	p.mu.Lock()
	p.pristine[name] = evidence{inside: *inside, outside: outside}
	p.mu.Unlock()
}

// recycle judges a released db-mode lease's clone in the background: back to the ready
// pool when its evidence is what it was when it became ready, dropped otherwise. It
// reports false, doing nothing, when the clone has no evidence (another process made
// it, a tx-mode lease used it, reading it failed) or the pool is closing: the caller
// retires it.
func (p *Pool) recycle(l *Lease) bool {
	p.mu.Lock()
	want, ok := p.pristine[l.name]
	if p.closed || !ok {
		p.mu.Unlock()
		return false
	}
	p.afterLease(l, func(ctx context.Context) {
		reused := p.judge(ctx, l, want)
		if l.countedDB {
			l.gen.judged(reused)
		}
		if reused {
			p.counters.clonesReused.Add(1)
			l.gen.signal()
			return
		}
		p.counters.clonesNotReused.Add(1)
		p.dropAll(ctx, []string{l.name})
	})
	return true
}

// judge reads a released clone's evidence and, when it is want and the clone's
// template is still current, marks the clone ready again. It reports whether it did.
func (p *Pool) judge(ctx context.Context, l *Lease, want evidence) bool {
	log := p.log.With(zap.String("clone", l.name))
	// A backend flushes its statistics before it leaves pg_stat_activity.
	gone, err := p.backendsGone(ctx, l.name, reuseExitWait)
	if err == nil && !gone {
		err = errBackendsLeft
	}
	same := false
	if err == nil {
		same, err = p.unchanged(ctx, l.name, want)
	}
	switch {
	case errors.Is(err, errBackendsLeft):
		log.Info("a released clone still has backends; dropping it", zap.Duration("waited", reuseExitWait))
		return false
	case err != nil:
		log.Debug("judge a released clone: dropping it", zap.Error(err))
		return false
	case !same:
		log.Debug("released clone was changed: dropping it")
		return false
	case !p.inUse(l.gen) || l.gen.dead.Load():
		return false
	}
	tag, err := p.cat.Exec(ctx, `UPDATE migrated_dbs SET state = 'ready', mode = NULL, last_used = now()
		WHERE datname = $1 AND state = 'leased' AND owner = $2`, l.name, p.owner)
	if err != nil || tag.RowsAffected() != 1 {
		log.Debug("return an unchanged clone to the pool", zap.Error(err))
		return false
	}
	log.Debug("released clone unchanged: back in the pool")
	return true
}
