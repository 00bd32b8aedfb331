package integration

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// firstLeaseBound is the correctness deadline for the first lease after the upstream
// answers again (the proxy re-takes its owner lock within 2s, its catalog and refill
// reconnect at once): generous, since the machine is shared and a db-mode client
// queues behind the load's for the refill; the time is printed.
const firstLeaseBound = 3 * time.Minute

// TestStressUpstreamRestart restarts the upstream (fast shutdown) in the middle of the
// load. Clients get 08006 or 57P01 and nothing else; the first lease of each mode after
// the upstream answers again (the load's in each mode, and a new tx-mode client's)
// comes within firstLeaseBound (printed); a connection opened right after the restart
// stays live while `pgtestproxy gc` runs in the window
// before the proxy has re-taken its owner lock, and the gc reclaims nothing; no clone
// handed out is half-built; after stop + gc no clone is leaked.
func TestStressUpstreamRestart(t *testing.T) {
	t.Parallel()
	sessions := stressKnob(envStressSessions, 16)
	secs := stressKnob(envStressSeconds, 3)
	u := newStressUpstream(t, sessions+100)
	mig := migrationsDir(t)
	p := startProxyProc(t, u.url("postgres"), mig, stressCapacity(sessions)...)
	l := startLoad(t, p, sessions)
	waitLeases(t, l, 2*sessions)

	back := u.restart()
	// gc, as another proxy would, while the live proxy may not have its lock back yet.
	var wg sync.WaitGroup
	var gcOut string
	wg.Go(func() { gcOut = gcRun(t, u.url("postgres"), mig) })
	// A new client's first lease after the restart, in tx mode (in db mode a new client
	// queues behind the load's db-mode clients for the refill, as it would without a
	// restart: there the load's own first lease is the measure).
	c, took, refused, err := firstLease(t, p.url("tx", ""), back)
	if err != nil {
		t.Fatal(err)
	}
	live := map[string]*pgx.Conn{"tx": c}
	firstTx := fmt.Sprintf("%s (%s)", took.Round(time.Millisecond), refused)
	waitFor(t, "the load's first db-mode lease after the restart", firstLeaseBound, func() bool {
		return l.firstAfter("db", back) >= 0
	})
	wg.Wait()
	for deadline := time.Now().Add(time.Duration(secs) * time.Second); time.Now().Before(deadline); {
		for mode, c := range live { // the live clients keep working through the window
			checkLive(t, mode, c)
		}
	}
	l.halt()
	t.Logf("upstream restart under %d sessions: after the upstream answered again, the load's first lease came after db %s, tx %s; "+
		"a new tx client's after %s; gc in the window: %s; %s", sessions,
		l.firstAfter("db", back).Round(time.Millisecond), l.firstAfter("tx", back).Round(time.Millisecond),
		firstTx, gcOut, l.figures())
	if !strings.HasPrefix(gcOut, "reclaimed 0 ") {
		t.Errorf("gc right after the restart reclaimed a live proxy's clones: %s", gcOut)
	}
	for mode, c := range live {
		checkLive(t, mode, c)
		c.Close(context.Background())
	}
	if bad := l.unexpected("08006", "57P01"); len(bad) > 0 {
		t.Errorf("unexpected across the restart: %s", strings.Join(bad, "; "))
	}
	p.stop()
	gc := gcRun(t, u.url("postgres"), mig)
	if c := census(t, u); c.leaked != 0 {
		t.Errorf("%d clones leaked after stop + gc (%s): %s", c.leaked, gc, c.detail)
	}
}

// waitLeases waits until the load has made n leases.
func waitLeases(t *testing.T, l *load, n int) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		l.mu.Lock()
		got := l.leases["db"] + l.leases["tx"]
		l.mu.Unlock()
		if got >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the load made %d leases in 2 minutes, want %d: %s", got, n, l.figures())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// firstLease connects to url until it gets a lease whose clone answers, and returns
// the connection, the time since back and what the attempts before it got. Refusals
// while the proxy reconnects are expected; firstLeaseBound is the deadline.
func firstLease(t *testing.T, url string, back time.Time) (*pgx.Conn, time.Duration, string, error) {
	var last error
	refused := map[string]int{}
	for time.Since(back) < firstLeaseBound {
		ctx, cancel := context.WithTimeout(t.Context(), firstLeaseBound-time.Since(back))
		c, err := pgx.Connect(ctx, url)
		if err == nil {
			var n int
			if err = c.QueryRow(ctx, "SELECT count(*) FROM users").Scan(&n); err == nil {
				cancel()
				return c, time.Since(back), fmt.Sprintf("refused before: %v", refused), nil
			}
			c.Close(ctx)
		}
		cancel()
		last = err
		refused[sqlState(err)]++
		time.Sleep(20 * time.Millisecond)
	}
	return nil, 0, "", fmt.Errorf("no lease within %s of the upstream answering again: %w", firstLeaseBound, last)
}

// checkLive fails the test when a live connection no longer sees its clone.
func checkLive(t *testing.T, mode string, c *pgx.Conn) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	var n int
	if err := c.QueryRow(ctx, "SELECT count(*) FROM users").Scan(&n); err != nil || n != 1 {
		t.Fatalf("%s lease opened after the restart: %d users, %v (its clone reclaimed?)", mode, n, err)
	}
}
