package main

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// readMostlyWrites is one test in readMostlyWrites of scenario 6 that writes (the
// suite simulation's body); the others only read.
const readMostlyWrites = 10

// reuseSuites is scenario 6: a read-mostly suite in db mode with the reuse of
// unchanged clones off (the baseline: every clone dropped) and on, in the same run.
// Each side is a proxy process of its own on a template of its own (a salted small
// set), so neither leases the other's clones.
func (b *bench) reuseSuites(ctx context.Context) error {
	sides := []struct {
		name     string
		baseline bool
		reuse    string
	}{
		{nameProxyDB + ", reuse off (--reuse-clean=false)", true, "false"},
		{nameProxyDB + ", reuse on (default)", false, "true"},
	}
	for _, w := range b.cfg.workers {
		group := fmt.Sprintf("6 read-mostly suite small (1 test in %d writes), %d tests, %d workers", readMostlyWrites, b.cfg.suiteN, w)
		for _, s := range sides {
			took, note, err := b.reuseSuite(ctx, s.reuse, w)
			if err != nil {
				return fmt.Errorf("%s: %s: %w", group, s.name, err)
			}
			b.rep.add(row{Group: group, Name: s.name, Unit: "s", Value: took.Seconds(), Baseline: s.baseline,
				Note: fmt.Sprintf("%.0f tests/s; %s", float64(b.cfg.suiteN)/took.Seconds(), note)})
		}
	}
	return nil
}

// reuseSuite starts a proxy with --reuse-clean=reuse, warms it with a pool's worth of
// tests, runs the suite and returns its wall time and the proxy's clone counters.
func (b *bench) reuseSuite(ctx context.Context, reuse string, workers int) (time.Duration, string, error) {
	dir, err := b.env.saltedSet(setSmall, fmt.Sprintf("reuse-%s-%d", reuse, workers))
	if err != nil {
		return 0, "", err
	}
	p, err := b.env.startProxy(ctx, map[string]string{setSmall: dir}, "--pool-size", fmt.Sprint(b.cfg.poolSize),
		"--reuse-clean="+reuse)
	if err != nil {
		return 0, "", err
	}
	defer p.stop()
	open := urlOpener(b.env.url(p.addr, setSmall, "mode", "db"))
	if _, err := runSuiteBody(ctx, open, 2*b.cfg.poolSize, 1, readMostlyBody); err != nil {
		return 0, "", fmt.Errorf("warm up: %w", err)
	}
	before, err := cloneCounters(ctx, b.env.url(p.addr, "pgtestproxy"))
	if err != nil {
		return 0, "", err
	}
	took, err := runSuiteBody(ctx, open, b.cfg.suiteN, workers, readMostlyBody)
	if err != nil {
		return 0, "", err
	}
	after, err := cloneCounters(ctx, b.env.url(p.addr, "pgtestproxy"))
	if err != nil {
		return 0, "", err
	}
	var parts []string
	for _, col := range []string{"clones_made", "clones_reused", "clones_not_reused"} {
		parts = append(parts, fmt.Sprintf("%s %d", strings.TrimPrefix(col, "clones_"), after[col]-before[col]))
	}
	return took, "clones " + strings.Join(parts, ", "), nil
}

// readMostlyBody is one test of the read-mostly suite: one in readMostlyWrites is the
// suite simulation's test (it writes), the others read, and check on the way that
// their database holds no other test's rows.
func readMostlyBody(ctx context.Context, db *sql.DB) error {
	if uniq.Add(1)%readMostlyWrites == 0 {
		return testBody(ctx, db)
	}
	var users, products int
	if err := db.QueryRowContext(ctx, "SELECT count(*) FROM bench_users").Scan(&users); err != nil {
		return fmt.Errorf("count users: %w", err)
	}
	if users != 0 {
		return fmt.Errorf("bench_users has %d rows, want the template's 0: a clone was reused after a test wrote to it", users)
	}
	if err := db.QueryRowContext(ctx, "SELECT count(*) FROM products WHERE price > 50").Scan(&products); err != nil {
		return fmt.Errorf("count products: %w", err)
	}
	var price string
	if err := db.QueryRowContext(ctx, "SELECT price FROM products WHERE sku = $1", "sku-7").Scan(&price); err != nil {
		return fmt.Errorf("select product: %w", err)
	}
	return nil
}

// cloneCounters reads the pool's clone counters from the proxy's admin console.
func cloneCounters(ctx context.Context, url string) (map[string]int64, error) {
	c, err := pgx.Connect(ctx, url)
	if err != nil {
		return nil, err
	}
	defer c.Close(context.WithoutCancel(ctx))
	rows, err := c.Query(ctx, "SHOW STATS", pgx.QueryExecModeSimpleProtocol)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[string]int64{}
	if !rows.Next() {
		return nil, fmt.Errorf("SHOW STATS: no row (%v)", rows.Err())
	}
	vals, err := rows.Values()
	if err != nil {
		return nil, err
	}
	for i, f := range rows.FieldDescriptions() {
		if s, ok := vals[i].(string); ok && strings.HasPrefix(f.Name, "clones_") {
			var n int64
			_, _ = fmt.Sscan(s, &n)
			out[f.Name] = n
		}
	}
	return out, rows.Err()
}
