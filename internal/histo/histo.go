// Package histo is a lock-free latency histogram with fixed buckets. The proxy and
// the pool record into it; the admin console reads quantiles from it and the
// Prometheus collector exposes the same buckets, so both show one source.
package histo

import (
	"sync/atomic"
	"time"
)

// Bounds are the bucket upper bounds, in seconds (Prometheus' "le"); a last, implicit
// bucket holds everything above the largest.
var Bounds = []float64{0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300}

// Histogram counts durations into Bounds. The zero value is ready to use.
type Histogram struct {
	counts [17]atomic.Uint64 // len(Bounds)+1, non-cumulative
	sum    atomic.Int64      // nanoseconds
}

// Observe records one duration.
func (h *Histogram) Observe(d time.Duration) {
	s := d.Seconds()
	i := 0
	for i < len(Bounds) && s > Bounds[i] {
		i++
	}
	h.counts[i].Add(1)
	h.sum.Add(int64(d))
}

// Snapshot is a histogram at one moment.
type Snapshot struct {
	Count      uint64
	Sum        time.Duration
	Cumulative []uint64 // per Bounds entry: observations ≤ that bound
}

// Snapshot reads the histogram. Concurrent Observes may be half seen (a count
// without its sum), which a scrape tolerates.
func (h *Histogram) Snapshot() Snapshot {
	s := Snapshot{Cumulative: make([]uint64, len(Bounds)), Sum: time.Duration(h.sum.Load())}
	for i := range h.counts {
		s.Count += h.counts[i].Load()
		if i < len(Bounds) {
			s.Cumulative[i] = s.Count
		}
	}
	return s
}

// Quantile estimates the q-quantile (0 < q ≤ 1) by linear interpolation inside the
// bucket that holds it, as Prometheus' histogram_quantile does. It is 0 with no
// observations, and the largest bound when the quantile lies above it.
func (s Snapshot) Quantile(q float64) time.Duration {
	if s.Count == 0 {
		return 0
	}
	rank := q * float64(s.Count)
	lower, below := 0.0, uint64(0)
	for i, c := range s.Cumulative {
		if float64(c) >= rank && c > below {
			frac := (rank - float64(below)) / float64(c-below)
			return time.Duration((lower + frac*(Bounds[i]-lower)) * float64(time.Second))
		}
		lower, below = Bounds[i], c
	}
	return time.Duration(Bounds[len(Bounds)-1] * float64(time.Second))
}
