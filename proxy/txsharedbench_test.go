package proxy

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgtestproxy/pgtestproxy/internal/leasemode"
	"github.com/pgtestproxy/pgtestproxy/internal/testpg"
)

// sharedPoolSize is the pool of BenchmarkSharedPool, as in issue 6.
const sharedPoolSize = 8

// BenchmarkSharedPool runs a pgxpool of 8 connections that share one tx-mode lease
// (one session key, so one backend and one transaction) against the same pool connected
// directly to a clone, interleaved in one run. Each operation is an INSERT followed by a
// SELECT of the row, from 8 goroutines at once. It reports each side's time per
// operation and the shared pool's throughput relative to direct.
func BenchmarkSharedPool(b *testing.B) {
	p := newWarmProvider(b, 2, "CREATE TABLE bench_items (id bigserial PRIMARY KEY, v text NOT NULL)")
	s := startProxy(b, Config{Provider: p, Logger: nopLogger()})
	var direct string
	for name := range p.cfgs {
		direct = testpg.URL(b, name)
		break
	}
	pools := []*pgxpool.Pool{openPool(b, direct), openPool(b, modeURL(s, leasemode.Tx, "app", "session=bench"))}
	const rounds = 4
	per := max(b.N/rounds, sharedPoolSize)
	took := make([]time.Duration, len(pools))
	b.ResetTimer()
	for range rounds {
		for i, pool := range pools {
			took[i] += insertSelect(b, pool, per)
		}
	}
	b.StopTimer()
	total := float64(rounds * per)
	b.ReportMetric(float64(took[0].Nanoseconds())/total, "direct-ns/op")
	b.ReportMetric(float64(took[1].Nanoseconds())/total, "shared-ns/op")
	b.ReportMetric(float64(took[0])/float64(took[1]), "shared/direct")
}

func openPool(b *testing.B, url string) *pgxpool.Pool {
	b.Helper()
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		b.Fatal(err)
	}
	cfg.MaxConns, cfg.MinConns = sharedPoolSize, sharedPoolSize
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(pool.Close)
	return pool
}

// insertSelect runs n INSERT-then-SELECT operations on pool from sharedPoolSize
// goroutines and returns how long they took.
func insertSelect(b *testing.B, pool *pgxpool.Pool, n int) time.Duration {
	b.Helper()
	ctx := context.Background()
	began := time.Now()
	var wg sync.WaitGroup
	for range sharedPoolSize {
		wg.Go(func() {
			for range n / sharedPoolSize {
				var id int64
				if err := pool.QueryRow(ctx, "INSERT INTO bench_items (v) VALUES ('x') RETURNING id").Scan(&id); err != nil {
					b.Error(err)
					return
				}
				var v string
				if err := pool.QueryRow(ctx, "SELECT v FROM bench_items WHERE id = $1", id).Scan(&v); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	return time.Since(began)
}
