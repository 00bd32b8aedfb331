package pool

import (
	"go.uber.org/zap"

	"github.com/pgtestproxy/pgtestproxy/internal/leasemode"
)

// Room for db mode at the cap. A clone this process keeps for tx mode (ready with a
// backend it kept, or parked) is never a db-mode lease's, so at MaxClones, with every
// clone of a template kept for tx mode and no other template's ready clone to evict,
// its db-mode waiters would wait until AcquireTimeout. evictKept drops one kept clone
// instead, to make room for a clone without a backend: a ready one first (beyond the
// parked PoolSize, tx mode's stock), else the parked one parked longest. Only the
// refill at the cap with db-mode waiters calls it, and it makes room for each waiter
// once: the room made and not yet taken by a creation of g counts against them.

// evictKept drops one clone of g this process keeps for tx mode; it reports whether
// it did.
func (p *Pool) evictKept(g *generation) bool {
	if g.roomMade.Add(1) > g.dbWaiters.Load() {
		g.roomMade.Add(-1)
		return false
	}
	if p.evictOneKept(g) {
		return true
	}
	g.roomMade.Add(-1)
	return false
}

// tookRoom counts a creation of g off the room made for its db-mode waiters.
func (g *generation) tookRoom() {
	for {
		n := g.roomMade.Load()
		if n <= 0 || g.roomMade.CompareAndSwap(n, n-1) {
			return
		}
	}
}

func (p *Pool) evictOneKept(g *generation) bool {
	ctx, cancel := p.dropContext()
	defer cancel()
	names, _ := p.claimNames(ctx, `UPDATE migrated_dbs SET state = 'dropping', owner = $2, kept_by = NULL
		WHERE datname = (SELECT datname FROM migrated_dbs WHERE state = 'ready' AND template_db = $1
			AND kept_by = $2 ORDER BY last_used LIMIT 1 FOR UPDATE SKIP LOCKED)
		RETURNING datname`, g.datname, p.owner)
	if len(names) > 0 {
		name := names[0]
		p.log.Info("dropping a clone kept for tx mode to make room under the cap for a db-mode lease", zap.String("clone", name))
		if err := p.dropClone(ctx, name); err != nil {
			p.retryDrop(name, err)
		}
		p.unbusyAll(names)
		return true
	}
	p.mu.Lock()
	list := p.parked[g]
	if p.closed || len(list) == 0 {
		p.mu.Unlock()
		return false
	}
	pc := list[0]
	p.parked[g] = list[1:]
	l := &Lease{p: p, gen: g, name: pc.name, mode: leasemode.Tx, released: true}
	p.leases[pc.name] = l // retire takes it from here
	p.mu.Unlock()
	p.log.Info("dropping a parked tx-mode clone to make room under the cap for a db-mode lease", zap.String("clone", pc.name))
	pc.keep.Close()
	p.retire(l)
	return true
}
