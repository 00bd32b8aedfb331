package pool

import (
	"sync/atomic"

	"github.com/pgtestproxy/pgtestproxy/internal/histo"
)

// counters are the pool's live counters. The admin console (SHOW STATS) and the
// Prometheus collector read them through Counters, one source for both.
type counters struct {
	clonesMade, clonesDropped, reclaimed, builds atomic.Int64
	clonesReused, clonesNotReused                atomic.Int64
	dbClaims                                     atomic.Int64 // db-mode claims' catalog round trips (wake.go)
	cloneTime, buildTime                         histo.Histogram
}

// Counters are what this pool (this process, not every pool sharing the catalog) did
// since it opened.
type Counters struct {
	ClonesMade    int64 // clones created
	ClonesDropped int64 // clones dropped (reclaimed ones included)
	Reclaimed     int64 // clones of dead pools (or this pool's unfinished ones) that GC dropped
	Builds        int64 // templates built (create + migrate + seal)
	ClonesReused  int64 // db-mode clones back in the pool after a lease, judged unchanged
	// ClonesNotReused counts db-mode clones dropped after their lease: changed, not
	// judged (no evidence, reuse off) or judged in doubt.
	ClonesNotReused int64
	CloneTime       histo.Snapshot // CREATE DATABASE … TEMPLATE
	BuildTime       histo.Snapshot // a template's create + migrate + seal
}

// Counters returns the pool's counters.
func (p *Pool) Counters() Counters {
	c := &p.counters
	return Counters{ClonesMade: c.clonesMade.Load(), ClonesDropped: c.clonesDropped.Load(),
		Reclaimed: c.reclaimed.Load(), Builds: c.builds.Load(),
		ClonesReused: c.clonesReused.Load(), ClonesNotReused: c.clonesNotReused.Load(),
		CloneTime: c.cloneTime.Snapshot(), BuildTime: c.buildTime.Snapshot()}
}
