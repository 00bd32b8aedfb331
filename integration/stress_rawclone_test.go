package integration

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// rawLeaseWorkers is how many connections the raw lease loop runs at once: past where
// it stops gaining on this machine's two cores (4 workers made 98–106 leases/s, 8 made
// 133, 16 made 137).
const rawLeaseWorkers = 8

// rawTemplate creates the load's template (a users table with one row) as a plain
// database stress_raw_tpl, dropped at the end of the test, for the raw loops.
func rawTemplate(t *testing.T, u *stressUpstream) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	c, err := pgx.Connect(ctx, u.url("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(context.Background())
	tpl := pgx.Identifier{"stress_raw_tpl"}.Sanitize()
	if _, err := c.Exec(ctx, "CREATE DATABASE "+tpl); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if c, err := pgx.Connect(context.Background(), u.url("postgres")); err == nil {
			_, _ = c.Exec(context.Background(), "DROP DATABASE IF EXISTS "+tpl)
			c.Close(context.Background())
		}
	})
	tc, err := pgx.Connect(ctx, u.url("stress_raw_tpl"))
	if err != nil {
		t.Fatal(err)
	}
	_, err = tc.Exec(ctx, `CREATE TABLE users (id serial PRIMARY KEY, name text NOT NULL UNIQUE);
		INSERT INTO users (name) VALUES ('alice')`)
	tc.Close(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return tpl
}

// rawCloneRate is the rate at which the upstream alone clones and drops tpl
// (rawTemplate) in a loop on one connection, with each strategy for d: CREATE DATABASE …
// TEMPLATE … STRATEGY s, then DROP DATABASE. It returns the faster strategy, its
// databases/s and a line with both: the bound the issue compares db mode's lease rate
// with (a db-mode lease that is not reused costs one of each, and more: rawLeaseRate).
func rawCloneRate(t *testing.T, u *stressUpstream, tpl string, d time.Duration) (string, float64, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute+4*d)
	defer cancel()
	c, err := pgx.Connect(ctx, u.url("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(context.Background())
	clone := pgx.Identifier{"stress_raw_clone"}.Sanitize()
	exec := func(sql string) {
		if _, err := c.Exec(ctx, sql); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
	var best float64
	var bestStrategy string
	var parts []string
	for _, strategy := range []string{"WAL_LOG", "FILE_COPY"} {
		n := 0
		var creates, drops time.Duration
		start := time.Now()
		for time.Since(start) < d {
			t0 := time.Now()
			exec("CREATE DATABASE " + clone + " TEMPLATE " + tpl + " STRATEGY " + strategy)
			t1 := time.Now()
			exec("DROP DATABASE " + clone)
			creates, drops = creates+t1.Sub(t0), drops+time.Since(t1)
			n++
		}
		rate := float64(n) / time.Since(start).Seconds()
		if rate > best {
			best, bestStrategy = rate, strategy
		}
		parts = append(parts, fmt.Sprintf("%s %.1f/s (create %s, drop %s on average)", strategy, rate,
			(creates/time.Duration(n)).Round(time.Millisecond), (drops/time.Duration(n)).Round(time.Millisecond)))
	}
	return bestStrategy, best, "raw clone+drop on one connection: " + strings.Join(parts, ", ")
}

// rawLeaseRate is the rate of what a db-mode lease costs the upstream without a proxy:
// rawLeaseWorkers connections at once, each in a loop of CREATE DATABASE … STRATEGY
// strategy, a connection to the new database running the load's lease (leaseWork),
// its close, and DROP DATABASE … WITH (FORCE), for d. A backend's first start in a new
// database costs more than the clone itself here, which the raw clone+drop loop leaves
// out; this is the rate the proxy's clone pipeline could reach at best.
func rawLeaseRate(t *testing.T, u *stressUpstream, tpl, strategy string, d time.Duration) (float64, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute+4*d)
	defer cancel()
	var n atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, rawLeaseWorkers)
	start := time.Now()
	for w := range rawLeaseWorkers {
		wg.Go(func() {
			c, err := pgx.Connect(ctx, u.url("postgres"))
			if err != nil {
				errs <- err
				return
			}
			defer c.Close(context.Background())
			for i := 0; time.Since(start) < d; i++ {
				name := fmt.Sprintf("stress_raw_lease_%d_%d", w, i)
				if _, err := c.Exec(ctx, "CREATE DATABASE "+name+" TEMPLATE "+tpl+" STRATEGY "+strategy); err != nil {
					errs <- err
					return
				}
				lc, err := pgx.Connect(ctx, u.url(name))
				if err == nil {
					err = leaseWork(ctx, lc, name, func(int, int) {})
					lc.Close(context.Background())
				}
				if _, derr := c.Exec(ctx, "DROP DATABASE "+name+" WITH (FORCE)"); err == nil {
					err = derr
				}
				if err != nil {
					errs <- err
					return
				}
				n.Add(1)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("raw lease loop: %v", err)
	}
	rate := float64(n.Load()) / time.Since(start).Seconds()
	return rate, fmt.Sprintf("raw lease loop (%d connections, each: CREATE DATABASE … STRATEGY %s, connect, the load's lease, DROP DATABASE): %.1f/s",
		rawLeaseWorkers, strategy, rate)
}
