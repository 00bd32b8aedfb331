package pool

import (
	"cmp"
	"context"
	crand "crypto/rand"
	"encoding/hex"
	"fmt"
	"github.com/jackc/pgerrcode"
	"github.com/pgtestproxy/pgtestproxy/internal/pgerr"
	"net/url"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"go.uber.org/zap"
)

const (
	// backendExitWait bounds the wait for a database's backends to go before it is
	// dropped or sealed: DROP DATABASE issued while a backend is still exiting sleeps
	// 100 ms inside PostgreSQL, a poll of pg_stat_activity costs well under 1 ms. An
	// exiting backend is gone within a few ms; one still in use after this long is not
	// exiting, and FORCE terminates it.
	backendExitWait = 100 * time.Millisecond
	backendPoll     = 2 * time.Millisecond
	// dropTimeout bounds one background drop.
	dropTimeout = 30 * time.Second
)

// cloneName returns a fresh name for a clone of gen.
func (p *Pool) cloneName(gen *generation) string {
	var b [5]byte
	_, _ = crand.Read(b[:])
	return p.namePrefix() + gen.hash[:8] + "_" + hex.EncodeToString(b[:])
}

// reserve records a new clone of gen as 'creating', provided fewer than MaxClones
// clones exist; the check and the insert run under a transaction-level advisory lock in
// one round trip, so the cap holds across processes. It returns errAtCap at the cap.
func (p *Pool) reserve(ctx context.Context, gen *generation, strategy string) (string, error) {
	name := p.cloneName(gen)
	b := &pgx.Batch{}
	b.Queue("SELECT pg_advisory_xact_lock($1, $2)", lockClassPool, lockCap)
	b.Queue(`INSERT INTO migrated_dbs (datname, template_db, state, owner, strategy)
		SELECT $1, $2, 'creating', $3, $4 WHERE (SELECT count(*) FROM migrated_dbs) < $5`,
		name, gen.datname, p.owner, strategy, p.cfg.MaxClones)
	p.markBusy(name)
	br := p.cat.SendBatch(ctx, b) // one implicit transaction: the lock is held until the insert commits
	_, err := br.Exec()
	var inserted int64
	if err == nil {
		var tag interface{ RowsAffected() int64 }
		tag, err = br.Exec()
		if err == nil {
			inserted = tag.RowsAffected()
		}
	}
	if cerr := br.Close(); err == nil {
		err = cerr
	}
	if err != nil || inserted == 0 {
		p.unbusy(name)
		if err != nil {
			return "", p.upstreamErr("reserve clone of "+gen.datname, err)
		}
		return "", errAtCap
	}
	return name, nil
}

// markBusy marks a clone as being worked on by this process (GC leaves it alone); each
// mark is undone by one unbusy.
func (p *Pool) markBusy(name string) {
	p.mu.Lock()
	p.busy[name]++
	p.mu.Unlock()
}

func (p *Pool) unbusy(name string) {
	p.mu.Lock()
	if p.busy[name]--; p.busy[name] <= 0 {
		delete(p.busy, name)
	}
	p.mu.Unlock()
}

// createClone makes one ready clone of gen with the given strategy ("" = the
// configured CloneStrategy, else gen's) and returns how long CREATE DATABASE took.
func (p *Pool) createClone(ctx context.Context, gen *generation, strategy string) (time.Duration, error) {
	if strategy == "" {
		strategy = cmp.Or(p.cfg.CloneStrategy, gen.strategy) // forced also for templates other processes built
	}
	name, err := p.reserve(ctx, gen, strategy)
	if err != nil {
		return 0, err
	}
	defer p.unbusy(name)
	sql := "CREATE DATABASE " + ident(name) + " TEMPLATE " + ident(gen.datname)
	if strategy != "" {
		sql += " STRATEGY " + strategy
	}
	began := time.Now()
	// The statement runs to its end, also when ctx ends (the pool closing): abandoned
	// half-way, the server may still commit it after the clean-up below found no
	// database to drop and forgot the row, leaving a database the catalog does not list.
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), dropTimeout)
	_, err = p.admin.Exec(cctx, sql)
	cancel()
	took := time.Since(began)
	if err == nil {
		p.warmAndRecord(ctx, gen, name)
		_, err = p.cat.Exec(ctx, `UPDATE migrated_dbs SET state = 'ready', clone_ms = $2, last_used = now()
			WHERE datname = $1 AND state = 'creating'`, name, ms(took))
	}
	if err != nil {
		if pgerr.SQLState(err) == pgerrcode.InvalidCatalogName {
			gen.dead.Store(true) // the template was dropped elsewhere
			gen.signal()
		}
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), dropTimeout)
		defer cancel()
		if derr := p.dropClone(cctx, name); derr != nil {
			p.log.Warn("clean up failed clone", zap.String("clone", name), zap.Error(derr))
		}
		return 0, p.upstreamErr(fmt.Sprintf("clone %s from %s", name, gen.datname), err)
	}
	p.counters.clonesMade.Add(1)
	p.counters.cloneTime.Observe(took)
	gen.signal()
	return took, nil
}

// warm opens and closes one connection to a new clone before it is offered. The first
// backend in a database builds its relation-cache init file; doing that here, in the
// background, takes it off the client's first connection (measured: connect + first
// query on a fresh clone 4.8 ms, after a warming connection 2.9 ms). A failure only
// costs the client that time, so it is logged, not returned.
func (p *Pool) warm(ctx context.Context, name string) {
	cfg := p.base.Config.Copy()
	cfg.Database = name
	c, err := pgconn.ConnectConfig(ctx, cfg)
	if err != nil {
		p.log.Debug("warm clone", zap.String("clone", name), zap.Error(err))
		return
	}
	_ = c.Close(ctx)
}

// dropClone drops a clone the caller owns in the catalog (leased, creating or dropping
// by this pool) and forgets it.
func (p *Pool) dropClone(ctx context.Context, name string) error {
	p.mu.Lock()
	k := p.kept[name]
	delete(p.kept, name)
	p.busy[name]++
	delete(p.pristine, name)
	p.mu.Unlock()
	defer p.unbusy(name)
	if k != nil {
		k.Close()
	}
	if _, err := p.cat.Exec(ctx, `UPDATE migrated_dbs SET state = 'dropping', owner = $2, kept_by = NULL
		WHERE datname = $1`, name, p.owner); err != nil {
		return p.upstreamErr("mark clone "+name+" dropping", err)
	}
	if err := p.dropDatabase(ctx, name); err != nil {
		return err
	}
	p.counters.clonesDropped.Add(1)
	_, err := p.cat.Exec(ctx, `DELETE FROM migrated_dbs WHERE datname = $1`, name)
	return p.upstreamErr("forget clone "+name, err)
}

// dropDatabase drops a database the pool created: its name comes from the catalog, and
// a name without the pool's prefix is refused whatever the catalog says. A template is
// unsealed first, and the subscriptions a test left in a clone are dropped. It waits
// briefly for the database's backends to exit, then drops WITH (FORCE).
func (p *Pool) dropDatabase(ctx context.Context, name string) error {
	if !strings.HasPrefix(name, p.namePrefix()) {
		return fmt.Errorf("refusing to drop database %q: it does not start with this pool's prefix %q", name, p.namePrefix())
	}
	var isTemplate, invalid bool
	err := p.cat.QueryRow(ctx, "SELECT datistemplate, datconnlimit = -2 FROM pg_database WHERE datname = $1",
		name).Scan(&isTemplate, &invalid)
	if err == pgx.ErrNoRows {
		return nil
	}
	if err != nil {
		return p.upstreamErr("look up database "+name, err)
	}
	// An interrupted DROP DATABASE leaves the database invalid (datconnlimit -2): it can
	// only be dropped, and ALTER on it is FATAL. So the drop itself is never cancelled.
	if isTemplate && !invalid {
		if _, err := p.admin.Exec(ctx, "ALTER DATABASE "+ident(name)+" IS_TEMPLATE false"); err != nil && pgerr.SQLState(err) != pgerrcode.InvalidCatalogName {
			return p.upstreamErr("unseal template "+name, err)
		}
	}
	if !isTemplate && !invalid { // a sealed template takes no connection, nor a subscription
		if err := p.dropSubscriptions(ctx, name); err != nil {
			return err
		}
	}
	if err := p.waitNoBackends(ctx, name); err != nil {
		return err
	}
	sql := "DROP DATABASE IF EXISTS " + ident(name)
	if p.major >= 13 {
		sql += " WITH (FORCE)"
	}
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), dropTimeout)
	defer cancel()
	_, err = p.admin.Exec(dctx, sql)
	return p.upstreamErr("drop database "+name, err)
}

// dropTemplate drops a template database and forgets it; conn holds the template's
// lock.
func (p *Pool) dropTemplate(ctx context.Context, conn *pgx.Conn, datname string) error {
	if err := p.dropDatabase(ctx, datname); err != nil {
		return err
	}
	_, err := conn.Exec(ctx, "DELETE FROM template_dbs WHERE datname = $1", datname)
	return p.upstreamErr("forget template "+datname, err)
}

// waitNoBackends polls pg_stat_activity until no backend is connected to datname, for
// at most backendExitWait (after which FORCE or PostgreSQL's own wait takes over).
func (p *Pool) waitNoBackends(ctx context.Context, datname string) error {
	_, err := p.backendsGone(ctx, datname, backendExitWait)
	return err
}

// backendsGone polls pg_stat_activity until no backend is connected to datname, for at
// most limit, and reports whether they went.
func (p *Pool) backendsGone(ctx context.Context, datname string, limit time.Duration) (bool, error) {
	deadline := time.Now().Add(limit)
	for {
		var n int
		err := p.cat.QueryRow(ctx, "SELECT count(*) FROM pg_stat_activity WHERE datname = $1", datname).Scan(&n)
		if err != nil {
			return false, p.upstreamErr("look for backends on "+datname, err)
		}
		if n == 0 || time.Now().After(deadline) {
			return n == 0, nil
		}
		select {
		case <-ctx.Done():
			return false, ctx.Err()
		case <-time.After(backendPoll):
		}
	}
}

// retireReady drops the ready clones of a template no name uses any more.
func (p *Pool) retireReady(gen *generation) {
	p.dropParked(gen)
	ctx, cancel := context.WithTimeout(context.Background(), dropTimeout)
	defer cancel()
	names, err := p.claimNames(ctx, `UPDATE migrated_dbs SET state = 'dropping', owner = $2, kept_by = NULL
		WHERE template_db = $1 AND state = 'ready' RETURNING datname`, gen.datname, p.owner)
	if err != nil {
		p.log.Warn("retire clones of a replaced template", zap.String("template", gen.datname), zap.Error(err))
	}
	p.dropAll(ctx, names)
	p.unbusyAll(names)
}

// dropAll drops clones, RefillParallelism at a time, and returns those it dropped. A
// clone whose drop failed (or that ctx left no time for) is not left half-dropped: its
// drop is retried in the background until it succeeds or the pool closes.
func (p *Pool) dropAll(ctx context.Context, names []string) []string {
	var dropped []string
	for i, name := range names {
		select {
		case p.dropSem <- struct{}{}:
		case <-ctx.Done():
			for _, n := range names[i:] {
				p.retryDrop(n, ctx.Err())
			}
			return dropped
		}
		err := p.dropClone(ctx, name)
		<-p.dropSem
		if err != nil {
			p.retryDrop(name, err)
			continue
		}
		dropped = append(dropped, name)
	}
	p.kickRefill()
	return dropped
}

// Backoff of a retried drop.
const (
	dropRetryFirst = 100 * time.Millisecond
	dropRetryMax   = 5 * time.Second
)

// retryDrop retries a failed drop in the background, with backoff, until the clone is
// gone or Close's drain ends (the next pool's GC reclaims it then). Once Close has begun
// it retries in the caller's goroutine, which Close's drain waits for.
func (p *Pool) retryDrop(name string, cause error) {
	if p.dropCtx.Err() != nil {
		return // the drain is over: the next GC reclaims it
	}
	p.log.Warn("drop clone failed; retrying", zap.String("clone", name), zap.Error(cause))
	p.markBusy(name) // GC leaves it to the retry
	retry := func() {
		defer p.unbusy(name)
		for wait := dropRetryFirst; ; wait = min(2*wait, dropRetryMax) {
			select {
			case <-p.dropCtx.Done():
				return
			case <-time.After(wait):
			}
			select {
			case p.dropSem <- struct{}{}:
			case <-p.dropCtx.Done():
				return
			}
			ctx, cancel := p.dropContext()
			err := p.dropClone(ctx, name)
			cancel()
			<-p.dropSem
			if err == nil {
				p.log.Info("dropped clone on retry", zap.String("clone", name))
				p.kickRefill()
				return
			}
		}
	}
	if !p.goBackground(retry) {
		retry()
	}
}

// urlWithDatabase points a postgres:// URL at database db.
func urlWithDatabase(s, db string) string {
	u, err := url.Parse(s)
	if err != nil {
		return s
	}
	u.Path, u.RawPath = "/"+db, ""
	q := u.Query()
	if q.Has("dbname") {
		q.Del("dbname")
		u.RawQuery = q.Encode()
	}
	return u.String()
}
