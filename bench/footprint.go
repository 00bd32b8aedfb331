package main

import (
	"context"
	"fmt"
	"slices"
	"sync"

	"github.com/jackc/pgx/v5"
)

// footprint is scenario 5: the proxy's RSS (from /proc) with 0, 100 and 500 idle
// sessions in each mode, and its goroutines when SHOW STATS reports them.
func (b *bench) footprint(ctx context.Context) error {
	e := b.env
	most := slices.Max(b.cfg.sessions)
	for _, mode := range []string{"db", "tx"} {
		group := "5 footprint, " + mode + " mode, idle sessions"
		// A proxy of its own per mode, on the already built small template. In tx mode
		// its pool holds a clone per session up front: the refill counts held tx-mode
		// leases as clones that come back, so waiters behind ≥ pool-size held tx leases
		// get no new clone (see BENCH.md).
		poolSize := b.cfg.poolSize
		if mode == "tx" {
			poolSize = most + b.cfg.poolSize
		}
		p, err := e.startProxy(ctx, map[string]string{setSmall: e.sets[setSmall]}, "--pool-size", fmt.Sprint(poolSize))
		if err != nil {
			return err
		}
		err = b.footprintOf(ctx, p, mode, group)
		p.stop()
		if err != nil {
			return err
		}
	}
	return nil
}

// footprintOf measures proxy p with each number of idle sessions in mode.
func (b *bench) footprintOf(ctx context.Context, p *proxyProc, mode, group string) error {
	for i, n := range b.cfg.sessions {
		conns, err := openIdle(ctx, b.env.url(p.addr, setSmall, "mode", mode), n)
		if err != nil {
			return fmt.Errorf("%s: %d sessions: %w", group, n, err)
		}
		rss, err := rssMB(p.cmd.Process.Pid)
		note := ""
		if st, serr := console(ctx, p.addr, "STATS"); serr == nil && len(st) == 1 {
			note = "sessions_active " + st[0]["sessions_active"]
			if g, ok := st[0]["goroutines"]; ok {
				note += ", goroutines " + g
			} else {
				note += "; goroutines: not reported by SHOW STATS"
			}
		}
		for _, c := range conns {
			_ = c.Close(ctx)
		}
		if err != nil {
			return err
		}
		b.rep.add(row{Group: group, Name: fmt.Sprintf("%d sessions: proxy RSS", n), Unit: "MB", Value: rss,
			Baseline: i == 0, Note: note})
	}
	return nil
}

// openIdle opens n connections to url, 8 at a time, and leaves them idle.
func openIdle(ctx context.Context, url string, n int) ([]*pgx.Conn, error) {
	conns := make([]*pgx.Conn, n)
	errs := make([]error, n)
	sem := make(chan struct{}, 8)
	var wg sync.WaitGroup
	for i := range n {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			conns[i], errs[i] = pgx.Connect(ctx, url)
		})
	}
	wg.Wait()
	var open []*pgx.Conn
	var first error
	for i, c := range conns {
		if c != nil {
			open = append(open, c)
		} else if first == nil {
			first = errs[i]
		}
	}
	if first != nil {
		for _, c := range open {
			_ = c.Close(ctx)
		}
		return nil, first
	}
	return open, nil
}
