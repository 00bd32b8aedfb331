package pool

// The refill makes a clone for every db-mode lease as it starts, to keep PoolSize
// ready. When clones come back from their leases (reuse.go), that clone is work the
// pool then trims away. So the refill counts as coming back, like tx-mode leases, the
// share of this process's db-mode leases of a template that recent releases say will
// come back: an average over the recent judgements (each weighs 1/8), which starts at
// none and stays near none for a suite that writes, so such a suite is refilled as
// without reuse.

// reuseOne is a reuse rate of 1 (every lease's clone comes back), in fixed point.
const reuseOne = 1 << 16

// judged records whether a db-mode lease's clone came back, and that the lease no
// longer counts as out.
func (g *generation) judged(reused bool) {
	g.leasedDB.Add(-1)
	target := int32(0)
	if reused {
		target = reuseOne
	}
	for {
		old := g.reuseRate.Load()
		if g.reuseRate.CompareAndSwap(old, old+(target-old)/8) {
			return
		}
	}
}

// comingBack is how many of this process's db-mode leases of g the refill expects back.
func (g *generation) comingBack() int {
	return int(int64(g.leasedDB.Load()) * int64(g.reuseRate.Load()) / reuseOne)
}
