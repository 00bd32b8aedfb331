package pool

import (
	"context"
	"errors"
	"time"

	"github.com/jackc/pgerrcode"
	"go.uber.org/zap"

	"github.com/pgtestproxy/pgtestproxy/internal/pgerr"
)

const (
	// refillTick is how often the refill loop looks without being kicked (to notice
	// clones other processes took).
	refillTick = 500 * time.Millisecond
	// failureBackoff pauses a template's refill after a failed clone (not after an
	// upstream that went away: upstreamGone).
	failureBackoff = time.Second
	// capBackoff pauses a template's refill while the clone cap is reached.
	capBackoff = 100 * time.Millisecond
)

func (p *Pool) refillLoop() {
	defer p.wg.Done()
	tick := time.NewTicker(refillTick)
	defer tick.Stop()
	for {
		select {
		case <-p.ctx.Done():
			return
		case <-p.kick:
		case <-tick.C:
			// Refresh the connection count Acquire's budget check starts from.
			if _, err := p.countUsage(p.ctx); err != nil && p.ctx.Err() == nil {
				p.log.Debug("count upstream connections", zap.Error(err))
			}
		}
		p.refill(p.ctx)
	}
}

// counts of one template's clones, as the refill sees them.
type counts struct {
	ready, leasedTx, creatingElsewhere, readyKept int // readyKept: ready with a backend this process kept
}

// refill starts the clone creations each current template needs: PoolSize ready
// (counting tx-mode leases, which come back, and clones being made by anyone), plus one
// per waiting Acquire; and, for db mode, PoolSize plus one per db-mode waiter among the
// ready clones without a backend kept for tx mode. It trims, least recently used first,
// the ready clones beyond PoolSize of each kind (with a kept backend, and without one
// plus the waiters), left by a burst or by tx-mode leases coming back. Creations queued
// beyond what is needed now (for waiters who have left) quit before they start.
func (p *Pool) refill(ctx context.Context) {
	gens := p.active()
	if len(gens) == 0 {
		return
	}
	names := make([]string, len(gens))
	for i, g := range gens {
		names[i] = g.datname
	}
	rows, err := p.cat.Query(ctx, `SELECT template_db,
			count(*) FILTER (WHERE state = 'ready'),
			count(*) FILTER (WHERE state = 'leased' AND mode = 'tx'),
			count(*) FILTER (WHERE state = 'creating' AND owner <> $2),
			count(*) FILTER (WHERE state = 'ready' AND kept_by = $2)
		FROM migrated_dbs WHERE template_db = ANY($1) GROUP BY template_db`, names, p.owner)
	if err != nil {
		if ctx.Err() == nil && !p.refillFailing {
			p.log.Warn("count clones for refill (further failures not logged until it works again)", zap.Error(err))
		}
		p.refillFailing = true
		return
	}
	if p.refillFailing {
		p.log.Info("refill working again")
		p.refillFailing = false
	}
	byName := make(map[string]counts)
	for rows.Next() {
		var name string
		var c counts
		if err := rows.Scan(&name, &c.ready, &c.leasedTx, &c.creatingElsewhere, &c.readyKept); err != nil {
			rows.Close()
			p.log.Warn("count clones for refill", zap.Error(err))
			return
		}
		byName[name] = c
	}
	rows.Close()
	now := time.Now()
	for _, g := range gens {
		g.mu.Lock()
		backoff := now.Before(g.backoff)
		g.mu.Unlock()
		if backoff {
			continue
		}
		c := byName[g.datname]
		// Trimming keeps PoolSize clones with a backend kept for tx mode (the next tx
		// leases' stock) and PoolSize plus the waiters without one (db mode's, and new
		// tx leases'): neither kind is trimmed to make room for the other.
		free := max(0, c.ready-c.readyKept-p.cfg.PoolSize-int(g.waiters.Load()))
		excess := free + max(0, c.readyKept-p.cfg.PoolSize)
		if excess > 0 && g.inflight.Load() == 0 && g.trimming.CompareAndSwap(false, true) {
			if !p.goBackground(func() { p.trim(g, excess, free) }) {
				g.trimming.Store(false)
			}
		}
		// Tx-mode leases come back, so they count towards PoolSize; they never count
		// towards the waiters, who need a clone now, not when a held lease ends.
		// So do db-mode leases expected to leave their clones unchanged (reuserate.go).
		building := c.creatingElsewhere + int(g.inflight.Load())
		back := g.comingBack()
		need := max(p.cfg.PoolSize-c.leasedTx-back, 0) + int(g.waiters.Load()) - c.ready - building
		// db-mode waiters need clones without a kept backend, whatever tx mode holds.
		need = max(need, max(p.cfg.PoolSize-back, 0)+int(g.dbWaiters.Load())-(c.ready-c.readyKept)-building)
		// More queued than needed (the waiters they were for have left, or got clones
		// from elsewhere): that many quit before they create.
		g.surplus.Store(int32(max(0, -need)))
		if g.dbWaiters.Load() == 0 {
			g.roomMade.Store(0) // whatever room was made, nobody waits for it now
		}
		for range need {
			g.inflight.Add(1)
			if !p.goBackground(func() { p.refillOne(g) }) {
				g.inflight.Add(-1)
				return
			}
		}
	}
}

// refillOne creates one clone of g when a creation slot is free.
func (p *Pool) refillOne(g *generation) {
	defer g.inflight.Add(-1)
	select {
	case p.createSem <- struct{}{}:
	case <-p.ctx.Done():
		return
	}
	defer func() { <-p.createSem }()
	if g.dead.Load() || g.takeSurplus() {
		return
	}
	_, err := p.createClone(p.ctx, g, "")
	if errors.Is(err, errAtCap) && g.wantsRoom() && p.evictFor(g) {
		// Take the room made at once: kicked again, another template's refill of its
		// warm stock could take it first, and this one evict that one's clone in turn.
		_, err = p.createClone(p.ctx, g, "")
	}
	switch {
	case err == nil:
		g.tookRoom()
		if !p.inUse(g) { // replaced while this clone was being made
			p.retireReady(g)
		}
	case errors.Is(err, errAtCap):
		p.pause(g, capBackoff)
		if g.dbWaiters.Load() > 0 && p.evictKept(g) {
			p.kickRefill()
		}
	case p.ctx.Err() != nil:
	case upstreamGone(err):
		// Not the template's failure: the refill starts again as soon as its count of
		// the clones works again (refill), which says so once, not per creation.
		p.log.Debug("refill clone: upstream unreachable", zap.String("template", g.template), zap.Error(err))
	default:
		p.pause(g, failureBackoff)
		p.log.Warn("refill clone", zap.String("template", g.template), zap.String("database", g.datname), zap.Error(err))
	}
}

// upstreamGone reports whether err says the upstream is down or restarting (it
// refused or dropped the connection, or ended the session while shutting down) rather
// than that the work itself failed.
func upstreamGone(err error) bool {
	switch pgerr.SQLState(err) {
	case pgerrcode.ConnectionFailure, pgerrcode.ConnectionException, pgerrcode.SQLClientUnableToEstablishSQLConnection,
		pgerrcode.AdminShutdown, pgerrcode.CrashShutdown, pgerrcode.CannotConnectNow:
		return true
	}
	return false
}

// waiterMemory is how long after its last waiter left a template still counts as
// wanted for evicting another template's idle clone at the cap.
const waiterMemory = 10 * time.Second

// stopWaiting counts a waiter of g off.
func (g *generation) stopWaiting() {
	g.waitedAt.Store(time.Now().UnixNano())
	g.waiters.Add(-1)
}

// wantsRoom reports whether g's refill at the cap may evict another template's idle
// clone: a client waits for one, or waited within waiterMemory. Clients that retry
// with a short timeout (each Acquire gives up, the next one comes) are between two
// waits as often as in one; the refill's attempt, which a waiter's arrival and leaving
// kick and the cap's backoff delays, could otherwise come only while none waits, and
// the template never got room.
func (g *generation) wantsRoom() bool {
	return g.waiters.Load() > 0 || time.Since(time.Unix(0, g.waitedAt.Load())) < waiterMemory
}

// takeSurplus reports whether a queued creation of g is no longer needed, counting it
// off the surplus.
func (g *generation) takeSurplus() bool {
	for {
		n := g.surplus.Load()
		if n <= 0 {
			return false
		}
		if g.surplus.CompareAndSwap(n, n-1) {
			return true
		}
	}
}

func (p *Pool) pause(g *generation, d time.Duration) {
	g.mu.Lock()
	g.backoff = time.Now().Add(d)
	g.mu.Unlock()
}

// evictFor makes room under the cap for a template with waiters by dropping the least
// recently used ready clone of another template.
func (p *Pool) evictFor(g *generation) bool {
	ctx, cancel := p.dropContext()
	defer cancel()
	names, _ := p.claimNames(ctx, `UPDATE migrated_dbs SET state = 'dropping', owner = $2, kept_by = NULL
		WHERE datname = (SELECT datname FROM migrated_dbs WHERE state = 'ready' AND template_db <> $1
			AND starts_with(datname, $3) ORDER BY last_used LIMIT 1 FOR UPDATE SKIP LOCKED)
		RETURNING datname`, g.datname, p.owner, p.namePrefix())
	if len(names) == 0 {
		return false
	}
	defer p.unbusyAll(names)
	name := names[0]
	p.log.Info("evicting an idle clone to make room under the cap", zap.String("clone", name),
		zap.String("for_template", g.template))
	if err := p.dropClone(ctx, name); err != nil {
		p.log.Warn("evict clone", zap.String("clone", name), zap.Error(err))
		return false
	}
	return true
}

// trim drops up to n ready clones of g unused for TrimIdle, least recently used first:
// up to free of those without a backend this process kept, and the rest among those
// with one.
func (p *Pool) trim(g *generation, n, free int) {
	defer g.trimming.Store(false)
	ctx, cancel := p.dropContext()
	defer cancel()
	var names []string
	for _, pick := range []struct {
		kept bool
		n    int
	}{{false, min(n, free)}, {true, n - min(n, free)}} {
		if pick.n == 0 {
			continue
		}
		got, err := p.claimNames(ctx, `UPDATE migrated_dbs SET state = 'dropping', owner = $3, kept_by = NULL
			WHERE datname IN (SELECT datname FROM migrated_dbs WHERE template_db = $1 AND state = 'ready'
				AND (kept_by IS NOT DISTINCT FROM $3) = $4 AND last_used < now() - make_interval(secs => $5)
				ORDER BY last_used LIMIT $2 FOR UPDATE SKIP LOCKED)
			RETURNING datname`, g.datname, pick.n, p.owner, pick.kept, p.cfg.trimIdle.Seconds())
		if err != nil {
			if ctx.Err() == nil {
				p.log.Warn("trim ready clones", zap.String("template", g.template), zap.Error(err))
			}
			break
		}
		names = append(names, got...)
	}
	p.dropAll(ctx, names)
	p.unbusyAll(names)
}
