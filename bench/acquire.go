package main

import (
	"context"
	"fmt"
	"time"
)

// acquisition is scenario 1: connect + first query + close, per approach, at a test's
// pace and flat out.
func (b *bench) acquisition(ctx context.Context) error {
	approaches, closeAll, err := b.approaches(ctx, setSmall, false)
	if err != nil {
		return err
	}
	defer closeAll()
	for _, pace := range []time.Duration{b.cfg.pace, 0} {
		group := fmt.Sprintf("1 acquisition, paced %v", pace)
		if pace == 0 {
			group = "1 acquisition, flat out"
		}
		for _, a := range approaches {
			lat, err := b.acquireLoop(ctx, a.open, pace)
			if err != nil {
				return fmt.Errorf("%s: %s: %w", group, a.name, err)
			}
			r := row{Group: group, Name: a.name, Unit: "ms", Value: ms(percentile(lat, 50)),
				P95: ms(percentile(lat, 95)), P99: ms(percentile(lat, 99)), Baseline: a.baseline}
			if a.name == nameProxyDB && pace == 0 { // paced, the rate is the pace's
				r.Note = dryNote(lat, b.cfg.poolSize)
			}
			b.rep.add(r)
		}
	}
	return nil
}

// acquireLoop times iterations acquisitions, pausing pace between them.
func (b *bench) acquireLoop(ctx context.Context, open opener, pace time.Duration) ([]time.Duration, error) {
	lat := make([]time.Duration, 0, b.cfg.iterations)
	for range b.cfg.iterations {
		start := time.Now()
		if err := oneTest(ctx, open, selectOne); err != nil {
			return nil, err
		}
		lat = append(lat, time.Since(start))
		if pace > 0 {
			select {
			case <-time.After(pace): // the test's own work between two acquisitions
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
	}
	return lat, nil
}

// dryNote says where the warm pool ran dry in a flat-out db-mode run: the first lease
// that took more than three times the median of the first poolSize (served warm), and
// the lease rate over the run's second half, which is then the refill rate.
func dryNote(lat []time.Duration, poolSize int) string {
	if len(lat) <= poolSize || poolSize == 0 {
		return ""
	}
	warm := percentile(lat[:poolSize], 50)
	dry := -1
	for i, d := range lat {
		if d > 3*warm {
			dry = i
			break
		}
	}
	half := lat[len(lat)/2:]
	var sum time.Duration
	for _, d := range half {
		sum += d
	}
	rate := float64(len(half)) / sum.Seconds()
	if dry < 0 {
		return fmt.Sprintf("pool never ran dry; %.0f leases/s in the second half", rate)
	}
	return fmt.Sprintf("pool (size %d) dry from lease %d; then %.0f leases/s = the refill rate (clones/s)", poolSize, dry+1, rate)
}
