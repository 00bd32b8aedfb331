package pool

import (
	"context"
	"time"

	"github.com/pgtestproxy/pgtestproxy/internal/leasemode"
)

// AcquireReady is Acquire that never waits: it claims a ready clone of the current
// template for database (built already, its migrations unchanged), or returns (nil,
// nil) when there is none, without starting a build or counting as a waiter the
// refill builds for. The proxy uses it to connect a db-mode lease ahead of its client
// (proxy, "Connecting ahead"), which must never hold up a client that waits: while an
// Acquire of the template waits, AcquireReady takes nothing, so the clones the refill
// makes go to the waiters (after an upstream restart, with clients waiting, a spare
// that took them would sit idle while they wait).
func (p *Pool) AcquireReady(ctx context.Context, database string, mode leasemode.Mode) (*Lease, error) {
	if mode == "" {
		mode = leasemode.DB
	}
	tpl, err := p.resolve(database)
	if err != nil {
		return nil, err
	}
	if p.isClosed() {
		return nil, ErrClosed
	}
	gen := p.currentGen(ctx, tpl)
	if gen == nil || gen.waiters.Load() > 0 {
		return nil, nil
	}
	gen.lastUsed.Store(time.Now().UnixNano())
	return p.claim(ctx, tpl, gen, mode)
}

// Current reports whether an Acquire of the lease's template now would hand out a
// clone of the same template database: the migrations are unchanged and the template
// is neither replaced nor gone. A lease taken ahead of its client is handed to it
// only while it is current.
func (l *Lease) Current(ctx context.Context) bool {
	tpl := l.p.templates[l.template]
	return tpl != nil && l.p.currentGen(ctx, tpl) == l.gen
}

// currentGen returns tpl's built template when it is the one of tpl's migrations as
// they are now, else nil (not built, changed, gone, or the hash failed): what Acquire
// would have to build or look up first.
func (p *Pool) currentGen(ctx context.Context, tpl *template) *generation {
	g := tpl.cur.Load()
	if g == nil || g.dead.Load() {
		return nil
	}
	hash, err := tpl.mig.Hash(ctx, p.major, p.cfg.catalogVersion)
	if err != nil || hash != g.hash {
		return nil
	}
	return g
}
