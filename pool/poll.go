package pool

import (
	"context"
	"time"
)

// Polling for other processes' clones. A waiting Acquire is woken at once by every
// clone this process makes or gets back; it polls the catalog only for what other
// processes sharing the catalog do (clones they make, leases they return). With no
// other live pool on the catalog there is nothing to poll for but what a wake-up may
// have missed, so it polls every lonePollInterval instead of pollInterval: under load,
// 50 db-mode waiters polling every 50 ms made ≈1000 of the catalog's ≈1250
// transactions/s, CPU taken from the clones being made and from tx mode's leases.

// lonePollInterval is how often a waiting Acquire polls when no other pool is alive
// on the catalog.
const lonePollInterval = time.Second

// peersSQL counts the other pools alive on the catalog (a heartbeat within their grace).
const peersSQL = `SELECT count(*) FROM owners WHERE id <> $1 AND heartbeat > now() - grace`

// countPeers records how many other pools are alive on the catalog.
func (p *Pool) countPeers(ctx context.Context) {
	var n int64
	if err := p.cat.QueryRow(ctx, peersSQL, p.owner).Scan(&n); err != nil {
		p.peers.Store(1) // unknown: poll as if there were
		return
	}
	p.peers.Store(n)
}

// pollEvery is how often a waiting Acquire polls the catalog.
func (p *Pool) pollEvery() time.Duration {
	if p.peers.Load() > 0 {
		return pollInterval
	}
	return lonePollInterval
}
