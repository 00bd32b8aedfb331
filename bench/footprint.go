package main

import (
	"context"
	"fmt"
	"sync"

	"github.com/jackc/pgx/v5"
)

// footprint is scenario 5: the proxy's RSS (from /proc) with 0, 100 and 500 idle
// sessions in each mode, and its goroutines when SHOW STATS reports them.
func (b *bench) footprint(ctx context.Context) error {
	e := b.env
	pid := e.proxy.cmd.Process.Pid
	for _, mode := range []string{"db", "tx"} {
		group := "5 footprint, " + mode + " mode, idle sessions"
		for i, n := range b.cfg.sessions {
			conns, err := openIdle(ctx, e.url(e.proxy.addr, setSmall, "mode", mode), n)
			if err != nil {
				return fmt.Errorf("%s: %d sessions: %w", group, n, err)
			}
			rss, err := rssMB(pid)
			note := ""
			if st, serr := console(ctx, e.proxy.addr, "STATS"); serr == nil && len(st) == 1 {
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
