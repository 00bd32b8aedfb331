package main

import (
	"context"
	"database/sql"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// suites is scenario 2: N simulated tests on W workers, per approach and migration
// set, warm and from a cold start.
func (b *bench) suites(ctx context.Context) error {
	for _, set := range []string{setSmall, setLarge} {
		approaches, closeAll, err := b.approaches(ctx, set, true)
		if err != nil {
			return err
		}
		for _, w := range b.cfg.workers {
			group := fmt.Sprintf("2 suite %s, %d tests, %d workers", set, b.cfg.suiteN, w)
			for _, a := range approaches {
				took, err := runSuite(ctx, a.open, b.cfg.suiteN, w)
				if err != nil {
					closeAll()
					return fmt.Errorf("%s: %s: %w", group, a.name, err)
				}
				b.rep.add(row{Group: group, Name: a.name, Unit: "s", Value: took.Seconds(), Baseline: a.baseline,
					Note: fmt.Sprintf("%.0f tests/s", float64(b.cfg.suiteN)/took.Seconds())})
			}
		}
		closeAll()
		if err := b.coldSuites(ctx, set); err != nil {
			return err
		}
	}
	return nil
}

// coldStart prepares an approach from nothing (a migration set no one has built) and
// returns its opener; its time counts in the suite's.
type coldStart struct {
	name     string
	baseline bool
	start    func(ctx context.Context, dir string) (opener, func(), error)
}

func (b *bench) coldSuites(ctx context.Context, set string) error {
	e := b.env
	starts := []coldStart{
		{namePgtestdb, true, func(ctx context.Context, dir string) (opener, func(), error) {
			return pgtestdbOpener(e, dir), func() {}, nil
		}},
		{nameTxdbWarm, false, func(ctx context.Context, dir string) (opener, func(), error) {
			db := fmt.Sprintf("bench_cold_%d", uniq.Add(1))
			if err := e.migrateInto(ctx, db, dir); err != nil {
				return nil, nil, err
			}
			w, err := newTxdbWarm(ctx, e.url("", db))
			if err != nil {
				return nil, nil, err
			}
			return w.opener(), w.close, nil
		}},
		{nameSyncClone, false, func(ctx context.Context, dir string) (opener, func(), error) {
			db := fmt.Sprintf("bench_cold_%d", uniq.Add(1))
			if err := e.migrateInto(ctx, db, dir); err != nil {
				return nil, nil, err
			}
			return cloneOpener(e, b.admin, db), func() {}, nil
		}},
		{nameProxyDB + " (process start included)", false, b.coldProxy(set, "db")},
		{nameProxyTx + " (process start included)", false, b.coldProxy(set, "tx")},
	}
	w := b.cfg.coldWorkers
	group := fmt.Sprintf("2 suite %s cold start, %d tests, %d workers", set, b.cfg.suiteN, w)
	for i, s := range starts {
		dir, err := e.saltedSet(set, fmt.Sprintf("suite%d", i))
		if err != nil {
			return err
		}
		t0 := time.Now()
		open, stop, err := s.start(ctx, dir)
		if err != nil {
			return fmt.Errorf("%s: %s: %w", group, s.name, err)
		}
		_, err = runSuite(ctx, open, b.cfg.suiteN, w)
		took := time.Since(t0)
		stop()
		if err != nil {
			return fmt.Errorf("%s: %s: %w", group, s.name, err)
		}
		b.rep.add(row{Group: group, Name: s.name, Unit: "s", Value: took.Seconds(), Baseline: s.baseline})
	}
	return nil
}

// coldProxy starts a proxy process of its own on the salted set: what `pgtestproxy
// run -- go test ./...` does on a machine that never built the template.
func (b *bench) coldProxy(set, mode string) func(context.Context, string) (opener, func(), error) {
	return func(ctx context.Context, dir string) (opener, func(), error) {
		p, err := b.env.startProxy(ctx, map[string]string{set: dir}, "--pool-size", fmt.Sprint(b.cfg.poolSize))
		if err != nil {
			return nil, nil, err
		}
		return urlOpener(b.env.url(p.addr, set, "mode", mode)), p.stop, nil
	}
}

// runSuite runs n tests on workers goroutines and returns the wall time.
func runSuite(ctx context.Context, open opener, n, workers int) (time.Duration, error) {
	return runSuiteBody(ctx, open, n, workers, testBody)
}

// runSuiteBody is runSuite with tests of the given body.
func runSuiteBody(ctx context.Context, open opener, n, workers int, body func(context.Context, *sql.DB) error) (time.Duration, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var next atomic.Int64
	var wg sync.WaitGroup
	var once sync.Once
	var firstErr error
	start := time.Now()
	for range workers {
		wg.Go(func() {
			for next.Add(1) <= int64(n) {
				if err := oneTest(ctx, open, body); err != nil {
					once.Do(func() { firstErr = err; cancel() })
					return
				}
			}
		})
	}
	wg.Wait()
	return time.Since(start), firstErr
}
