package integration

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// TestStressFootprint prints the real binary's RSS (VmRSS) and SHOW STATS'
// goroutines with PGTESTPROXY_STRESS_SESSIONS idle tx-mode sessions (issue 11 item 8;
// the goal is ≤ 64 MB at 500): first all on one session key (one clone, one backend),
// then each its own lease (a clone and a backend each), then with those clones back in
// the warm pool (--pool-size is the session count) holding their kept backends. GOGC and GOMEMLIMIT in the test's
// environment reach the proxy. Nothing is asserted but that every session is served.
func TestStressFootprint(t *testing.T) {
	t.Parallel()
	sessions := stressKnob(envStressSessions, 16)
	u := newStressUpstream(t, sessions+150)
	mig := migrationsDir(t)
	p := startProxyProc(t, u.url("postgres"), mig, fmt.Sprintf("--max-clones=%d", sessions+16),
		fmt.Sprintf("--max-sessions=%d", sessions+16), fmt.Sprintf("--pool-size=%d", sessions),
		"--acquire-timeout=10m") // memory is measured here, not the clone rate
	idle := p.rssMiB()
	figure := func(what string, conns []*pgx.Conn) string {
		s := fmt.Sprintf("%s: RSS %.1f MiB, goroutines %s", what, p.rssMiB(), p.goroutines())
		for _, c := range conns {
			c.Close(context.Background())
		}
		return s
	}
	shared := figure(fmt.Sprintf("%d on one key", sessions), openIdle(t, p, sessions, "&session=footprint"))
	waitFor(t, "the shared lease to end", time.Minute, func() bool { return len(p.console("SHOW LEASES")) == 0 })
	own := figure(fmt.Sprintf("%d own leases", sessions), openIdle(t, p, sessions, ""))
	waitFor(t, "the leases to end", 5*time.Minute, func() bool { return len(p.console("SHOW LEASES")) == 0 })
	warm := figure(fmt.Sprintf("%d warm clones with kept backends", sessions), nil)
	t.Logf("footprint: idle %.1f MiB; %s; %s; %s", idle, shared, own, warm)
}

// openIdle opens n tx-mode sessions (with extra URL parameters), 32 at a time, each
// checked with a query, and returns them open.
func openIdle(t *testing.T, p *proxyProc, n int, extra string) []*pgx.Conn {
	t.Helper()
	conns := make([]*pgx.Conn, n)
	errs := make(chan error, n)
	sem := make(chan struct{}, 32)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			ctx, cancel := context.WithTimeout(t.Context(), 10*time.Minute)
			defer cancel()
			c, err := pgx.Connect(ctx, p.url("tx", extra))
			if err == nil {
				_, err = c.Exec(ctx, "SELECT count(*) FROM users")
			}
			if err != nil {
				errs <- err
				return
			}
			conns[i] = c
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("open idle session: %v", err)
	}
	return conns
}
