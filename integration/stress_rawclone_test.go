package integration

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// rawCloneRate is the rate at which the upstream alone clones and drops a small
// template (the load's: a users table with one row) in a loop on one connection, with
// each strategy for d: CREATE DATABASE … TEMPLATE … STRATEGY s, then DROP DATABASE. It
// returns the faster strategy's databases/s and a line with both, the bound db mode's
// lease rate is compared with (a db-mode lease that is not reused costs one of each).
func rawCloneRate(t *testing.T, u *stressUpstream, d time.Duration) (float64, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute+4*d)
	defer cancel()
	c, err := pgx.Connect(ctx, u.url("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(context.Background())
	tpl, clone := pgx.Identifier{"stress_raw_tpl"}.Sanitize(), pgx.Identifier{"stress_raw_clone"}.Sanitize()
	exec := func(sql string) {
		if _, err := c.Exec(ctx, sql); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
	exec("CREATE DATABASE " + tpl)
	defer exec("DROP DATABASE IF EXISTS " + tpl)
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
	var best float64
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
		best = max(best, rate)
		parts = append(parts, fmt.Sprintf("%s %.1f/s (create %s, drop %s on average)", strategy, rate,
			(creates/time.Duration(n)).Round(time.Millisecond), (drops/time.Duration(n)).Round(time.Millisecond)))
	}
	return best, "raw clone+drop on one connection: " + strings.Join(parts, ", ")
}
