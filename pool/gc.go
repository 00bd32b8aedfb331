package pool

import (
	"context"
	"errors"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"
	"go.uber.org/zap"
)

// GCReport says what a GC run did.
type GCReport struct {
	Reclaimed []string // clones leased, being made or being dropped by pools that died, dropped
	Clones    []string // ready clones unused for TTL, dropped (a failed drop is retried in the background, not listed)
	Templates []string // templates unused for TTL, prefix templates beyond keptPrefixes, or left half-built
	Forgotten int      // catalog rows whose database no longer existed
}

// GC reclaims the clones of dead pools (whose owner lock is gone), drops ready clones
// and templates unused for TTL (never a template this pool is using, one being built or
// one with clones leased) and forgets catalog rows whose database vanished. It drops
// only databases listed in the catalog with the pool's prefix: a look-alike database
// outside the catalog is never touched, nor a catalog entry of a pool with another
// prefix. The pool runs it at start-up (unless NoStartupGC) and every ReclaimInterval;
// GC runs one at a time.
func (p *Pool) GC(ctx context.Context) (GCReport, error) {
	p.gcMu.Lock()
	defer p.gcMu.Unlock()
	var r GCReport
	var errs []error
	var err error
	if r.Reclaimed, err = p.reclaim(ctx); err != nil {
		errs = append(errs, err)
	}
	if r.Clones, err = p.claimNames(ctx, `UPDATE migrated_dbs SET state = 'dropping', owner = $1, kept_by = NULL
		WHERE state = 'ready' AND last_used < now() - make_interval(secs => $2) AND starts_with(datname, $3)
		RETURNING datname`, p.owner, p.cfg.TTL.Seconds(), p.namePrefix()); err != nil {
		errs = append(errs, err)
	}
	// Report what was really dropped; a failed drop is retried in the background.
	claimed := append(append([]string(nil), r.Reclaimed...), r.Clones...)
	dropped := p.dropAll(ctx, claimed)
	p.unbusyAll(claimed)
	r.Reclaimed = keep(r.Reclaimed, dropped)
	p.counters.reclaimed.Add(int64(len(r.Reclaimed)))
	r.Clones = keep(r.Clones, dropped)
	if r.Templates, err = p.gcTemplates(ctx); err != nil {
		errs = append(errs, err)
	}
	if r.Forgotten, err = p.forgetVanished(ctx); err != nil {
		errs = append(errs, err)
	}
	if _, err := p.cat.Exec(ctx, `DELETE FROM owners o WHERE id <> $1 AND NOT `+alive("o.id"), p.owner); err != nil {
		errs = append(errs, p.upstreamErr("forget dead pools", err))
	}
	if n := len(r.Reclaimed) + len(r.Clones) + len(r.Templates) + r.Forgotten; n > 0 {
		p.log.Info("gc", zap.Strings("reclaimed", r.Reclaimed), zap.Strings("idle_clones", r.Clones),
			zap.Strings("templates", r.Templates), zap.Int("forgotten_rows", r.Forgotten))
	}
	return r, errors.Join(errs...)
}

// reclaim takes over the clones of dead pools, and this pool's own unfinished ones
// (a creation or drop that failed half-way), marking them dropping and busy (the
// caller unbusies them). This pool's own leased clones are never reclaimed here: they
// are in its hands or being handed out.
func (p *Pool) reclaim(ctx context.Context) ([]string, error) {
	p.claimMu.Lock()
	defer p.claimMu.Unlock()
	p.mu.Lock()
	busy := make([]string, 0, len(p.busy)+len(p.leases))
	for name := range p.busy {
		busy = append(busy, name)
	}
	for name := range p.leases {
		busy = append(busy, name)
	}
	p.mu.Unlock()
	return p.claimed(p.cat.Query(ctx, `UPDATE migrated_dbs m SET state = 'dropping', owner = $1, kept_by = NULL
		WHERE m.state IN ('leased', 'creating', 'dropping') AND m.datname <> ALL($2) AND starts_with(m.datname, $3)
		  AND CASE WHEN m.owner = $1 THEN m.state <> 'leased' ELSE NOT `+alive("m.owner")+` END
		RETURNING m.datname`, p.owner, busy, p.namePrefix()))
}

// keep returns the names in names that are also in in.
func keep(names, in []string) []string {
	var out []string
	for _, n := range names {
		if slices.Contains(in, n) {
			out = append(out, n)
		}
	}
	return out
}

// claimNames runs an UPDATE … RETURNING datname that marks rows dropping, owned by
// this pool, and marks the names busy before reclaim can see them (claimMu); the
// caller unbusies them (unbusyAll) once it has dropped them or handed them to a retry.
func (p *Pool) claimNames(ctx context.Context, sql string, args ...any) ([]string, error) {
	p.claimMu.RLock()
	defer p.claimMu.RUnlock()
	return p.claimed(p.cat.Query(ctx, sql, args...))
}

// claimed collects the names a claim's UPDATE returned and marks them busy.
func (p *Pool) claimed(rows pgx.Rows, err error) ([]string, error) {
	names, err2 := pgx.CollectRows(rows, pgx.RowTo[string])
	if err == nil {
		err = err2
	}
	for _, name := range names {
		p.markBusy(name)
	}
	return names, p.upstreamErr("gc", err)
}

// unbusyAll undoes claimNames' marks.
func (p *Pool) unbusyAll(names []string) {
	for _, name := range names {
		p.unbusy(name)
	}
}

// gcTemplates drops templates unused for TTL, and prefix templates beyond the
// keptPrefixes most recently used of their template name, that no one is building or
// leasing from, and half-built ones whose builder is gone.
func (p *Pool) gcTemplates(ctx context.Context) ([]string, error) {
	active := []string{} // not nil: pgx sends a nil slice as NULL, and x <> ALL(NULL) is never true
	for _, g := range p.active() {
		active = append(active, g.datname)
	}
	rows, err := p.cat.Query(ctx, `SELECT datname FROM template_dbs
		WHERE datname <> ALL($1) AND starts_with(datname, $3)
		  AND (state = 'building' OR last_used < now() - make_interval(secs => $2) OR `+surplusPrefix+`)`,
		active, p.cfg.TTL.Seconds(), p.namePrefix())
	candidates, err2 := pgx.CollectRows(rows, pgx.RowTo[string])
	if err == nil {
		err = err2
	}
	if err != nil {
		return nil, p.upstreamErr("list stale templates", err)
	}
	var dropped []string
	for _, name := range candidates {
		ok, err := p.gcTemplate(ctx, name)
		if err != nil {
			return dropped, err
		}
		if ok {
			dropped = append(dropped, name)
		}
	}
	return dropped, nil
}

// gcTemplate drops one stale template if its lock is free (no build in progress) and
// none of its clones is leased or being made; its ready clones go with it.
func (p *Pool) gcTemplate(ctx context.Context, datname string) (bool, error) {
	conn, err := p.admin.Acquire(ctx)
	if err != nil {
		return false, p.upstreamErr("gc template "+datname, err)
	}
	defer conn.Release()
	var locked bool
	if err := conn.QueryRow(ctx, "SELECT pg_try_advisory_lock($1, hashtext($2))", lockClass, datname).Scan(&locked); err != nil {
		return false, p.upstreamErr("lock template "+datname, err)
	}
	if !locked {
		return false, nil // being built
	}
	defer unlockTemplate(conn, datname)
	var stale bool
	err = conn.QueryRow(ctx, `SELECT (state = 'building' OR last_used < now() - make_interval(secs => $2) OR `+surplusPrefix+`)
			AND NOT EXISTS (SELECT 1 FROM migrated_dbs WHERE template_db = $1 AND state IN ('leased', 'creating'))
		FROM template_dbs WHERE datname = $1`, datname, p.cfg.TTL.Seconds()).Scan(&stale)
	if err == pgx.ErrNoRows || (err == nil && !stale) {
		return false, nil
	}
	if err != nil {
		return false, p.upstreamErr("check template "+datname, err)
	}
	clones, err := p.claimNames(ctx, `UPDATE migrated_dbs SET state = 'dropping', owner = $2, kept_by = NULL
		WHERE template_db = $1 AND state = 'ready' RETURNING datname`, datname, p.owner)
	if err != nil {
		return false, err
	}
	dropped := p.dropAll(ctx, clones)
	p.unbusyAll(clones)
	if len(dropped) < len(clones) {
		return false, nil // the failed drops are retried; a later GC drops the template
	}
	if err := p.dropTemplate(ctx, conn.Conn(), datname); err != nil {
		return false, err
	}
	p.forgetGeneration(datname)
	return true, nil
}

// forgetGeneration drops a template from the in-process cache so it is rebuilt if
// needed again.
func (p *Pool) forgetGeneration(datname string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for hash, g := range p.gens {
		if g.datname == datname {
			g.dead.Store(true)
			delete(p.gens, hash)
			g.signal()
		}
	}
}

// forgetVanished deletes catalog rows of ready clones and templates whose database no
// longer exists (dropped by hand, or a server whose data directory was reset).
func (p *Pool) forgetVanished(ctx context.Context) (int, error) {
	tag, err := p.cat.Exec(ctx, `DELETE FROM migrated_dbs m WHERE state = 'ready'
		AND NOT EXISTS (SELECT 1 FROM pg_database d WHERE d.datname = m.datname)`)
	if err != nil {
		return 0, p.upstreamErr("forget vanished clones", err)
	}
	n := int(tag.RowsAffected())
	rows, err := p.cat.Query(ctx, `DELETE FROM template_dbs t WHERE state = 'ready'
		AND NOT EXISTS (SELECT 1 FROM pg_database d WHERE d.datname = t.datname) RETURNING datname`)
	names, err2 := pgx.CollectRows(rows, pgx.RowTo[string])
	if err == nil {
		err = err2
	}
	if err != nil {
		return n, p.upstreamErr("forget vanished templates", err)
	}
	for _, name := range names {
		p.forgetGeneration(name)
	}
	return n + len(names), nil
}

// maintainLoop runs GC at start-up (unless NoStartupGC) and every ReclaimInterval,
// records template use and closes kept resources whose
// clone another process took.
func (p *Pool) maintainLoop() {
	defer p.wg.Done()
	tick := time.NewTicker(p.cfg.ReclaimInterval)
	defer tick.Stop()
	for first := true; ; first = false {
		ctx := p.ctx
		p.flushLastUsed(ctx)
		if !first || !p.cfg.NoStartupGC {
			if _, err := p.GC(ctx); err != nil && ctx.Err() == nil {
				p.log.Warn("background gc", zap.Error(err))
			}
		}
		p.reconcileKept(ctx)
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// flushLastUsed records in the catalog when this process last used each template, so
// other processes' GC leaves it alone.
func (p *Pool) flushLastUsed(ctx context.Context) {
	var names []string
	var gens []*generation
	for _, g := range p.active() {
		if u := g.lastUsed.Load(); u > g.flushed.Load() {
			names, gens = append(names, g.datname), append(gens, g)
		}
	}
	if len(names) == 0 {
		return
	}
	if _, err := p.cat.Exec(ctx, `UPDATE template_dbs SET last_used = now() WHERE datname = ANY($1)`, names); err != nil {
		if ctx.Err() == nil {
			p.log.Warn("record template use", zap.Error(err))
		}
		return
	}
	for _, g := range gens {
		g.flushed.Store(g.lastUsed.Load())
	}
}

// reconcileKept closes resources kept in clones that are no longer ready with this
// process's mark (another process claimed them).
func (p *Pool) reconcileKept(ctx context.Context) {
	p.mu.Lock()
	names := make([]string, 0, len(p.kept))
	for name := range p.kept {
		names = append(names, name)
	}
	p.mu.Unlock()
	if len(names) == 0 {
		return
	}
	rows, err := p.cat.Query(ctx, `SELECT k FROM unnest($1::text[]) k WHERE NOT EXISTS (
		SELECT 1 FROM migrated_dbs WHERE datname = k AND state = 'ready' AND kept_by = $2)`, names, p.owner)
	stale, err2 := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil || err2 != nil {
		return
	}
	for _, name := range stale {
		p.mu.Lock()
		k := p.kept[name]
		if _, leased := p.leases[name]; leased {
			k = nil
		}
		if k != nil {
			delete(p.kept, name)
		}
		p.mu.Unlock()
		if k != nil {
			k.Close()
		}
	}
}
