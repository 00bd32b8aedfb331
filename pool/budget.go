package pool

import (
	"context"
	"fmt"
	"sync/atomic"

	"github.com/jackc/pgerrcode"
	"go.uber.org/zap"

	"github.com/pgtestproxy/pgtestproxy/internal/pgerr"
)

// budget is the upstream's connection budget: how many client connections the server
// takes from roles without superuser privileges, and how many are in use.
type budget struct {
	max      int // max_connections
	reserved int // superuser_reserved_connections + reserved_connections (16+)
	usable   int // max - reserved

	used    atomic.Int64 // at the last count: backends, plus leased clones without one
	granted atomic.Int64 // leases this pool granted since that count
}

// usageSQL counts the upstream connections in use: every client backend, plus one for
// each leased clone (in this catalog) that has none yet, since its client is about to
// connect.
const usageSQL = `SELECT (SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend')
	+ (SELECT count(*) FROM migrated_dbs m WHERE m.state = 'leased'
		AND NOT EXISTS (SELECT 1 FROM pg_stat_activity a WHERE a.datname = m.datname))`

// learnBudget reads the upstream's connection limits.
func (p *Pool) learnBudget(ctx context.Context) error {
	b := &p.budget
	err := p.cat.QueryRow(ctx, `SELECT current_setting('max_connections')::int,
		current_setting('superuser_reserved_connections')::int
		+ coalesce(current_setting('reserved_connections', true)::int, 0)`).Scan(&b.max, &b.reserved)
	if err != nil {
		return p.upstreamErr("read the upstream's connection limits", err)
	}
	b.usable = b.max - b.reserved
	if p.cfg.MaxClones+p.cfg.ConnectionReserve > b.usable {
		p.log.Warn("MaxClones allows more leases than the upstream has connections for; Acquire refuses the excess with 53300",
			zap.Int("max_clones", p.cfg.MaxClones), zap.Int("connection_reserve", p.cfg.ConnectionReserve),
			zap.Int("max_connections", b.max), zap.Int("reserved_connections", b.reserved))
	}
	_, err = p.countUsage(ctx)
	return err
}

// countUsage counts the connections in use now.
func (p *Pool) countUsage(ctx context.Context) (int, error) {
	var n int
	if err := p.cat.QueryRow(ctx, usageSQL).Scan(&n); err != nil {
		return 0, p.upstreamErr("count upstream connections", err)
	}
	p.budget.used.Store(int64(n))
	p.budget.granted.Store(0)
	return n, nil
}

// checkBudget refuses another lease when its connection would leave fewer than
// ConnectionReserve of the upstream's usable connections free. Far from the limit the
// last count plus the leases granted since suffices (a lease's client may open more
// than one backend, so "far" is twice the reserve); near it the upstream is asked.
func (p *Pool) checkBudget(ctx context.Context) error {
	b := &p.budget
	if b.usable == 0 {
		return nil // not learnt (New failed half-way)
	}
	room := func(used, reserve int) bool { return used+1+reserve <= b.usable }
	if room(int(b.used.Load()+b.granted.Load()), 2*p.cfg.ConnectionReserve) {
		return nil
	}
	used, err := p.countUsage(ctx)
	if err != nil || room(used, p.cfg.ConnectionReserve) {
		return err
	}
	return pgerr.New(pgerrcode.TooManyConnections, fmt.Sprintf(
		"no upstream connection left for another lease: upstream %s takes %d client connections (max_connections %d minus %d reserved), "+
			"%d are in use or leased, and pgtestproxy keeps %d free for its own work; "+
			"end some sessions, lower --max-clones (now %d), or raise max_connections on the server",
		p.addr, b.usable, b.max, b.reserved, used, p.cfg.ConnectionReserve, p.cfg.MaxClones))
}
