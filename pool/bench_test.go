package pool

import (
	"context"
	"fmt"
	"github.com/pgtestproxy/pgtestproxy/internal/leasemode"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// benchSchema is a modest application schema: 20 tables with indexes, a view, a
// function and 1000 seed rows.
func benchSchema() map[string]string {
	var b strings.Builder
	for i := range 20 {
		fmt.Fprintf(&b, "CREATE TABLE t%02d (id bigserial PRIMARY KEY, name text NOT NULL, created timestamptz DEFAULT now(), n int);\n", i)
		fmt.Fprintf(&b, "CREATE INDEX ON t%02d (name);\nCREATE INDEX ON t%02d (created);\n", i, i)
	}
	return map[string]string{
		"001_tables.up.sql": b.String(),
		"002_seed.up.sql": "INSERT INTO t00 (name, n) SELECT 'row ' || g, g FROM generate_series(1, 1000) g;\n" +
			"CREATE VIEW recent AS SELECT * FROM t00 ORDER BY created DESC LIMIT 10;\n" +
			"CREATE FUNCTION total() RETURNS bigint LANGUAGE sql AS $$ SELECT sum(n) FROM t00 $$;\n",
	}
}

// connectQuery connects to cfg's database, runs a first query and disconnects, as a
// test would.
func connectQuery(b *testing.B, cfg *pgconn.Config) {
	ctx := context.Background()
	c, err := pgconn.ConnectConfig(ctx, cfg)
	if err != nil {
		b.Fatal(err)
	}
	if _, err := c.Exec(ctx, "SELECT count(*) FROM t00").ReadAll(); err != nil {
		b.Fatal(err)
	}
	c.Close(ctx)
}

func median(d []time.Duration) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[len(s)/2]
}

func msOf(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// BenchmarkLease compares, in one run on one server, a warm-pool lease (acquire →
// connect → first query → release) with what a test helper does without the pool (a
// synchronous CREATE DATABASE … TEMPLATE of the same template → connect → first query;
// its DROP is not counted). Each iteration does one of each, so the pool refills while
// the baseline runs, as it would while a test runs.
func BenchmarkLease(b *testing.B) {
	f := newFixture(b)
	cfg := f.config(map[string]Migrator{"": newMigDir(b, benchSchema())})
	p := f.pool(cfg)
	ctx := context.Background()
	acquireBench(b, p).Release(ctx, true) // build
	tpl := p.templates[""].cur.Load().datname
	admin, err := pgx.Connect(ctx, f.admin)
	if err != nil {
		b.Fatal(err)
	}
	defer admin.Close(ctx)
	waitReady(b, p, cfg.PoolSize)

	var acquire, warm, syncClone []time.Duration
	i := 0
	for b.Loop() {
		t0 := time.Now()
		l := acquireBench(b, p)
		acquire = append(acquire, time.Since(t0))
		connectQuery(b, l.ConnConfig())
		l.Release(ctx, true)
		warm = append(warm, time.Since(t0))

		i++
		name := fmt.Sprintf("%ssync_%d", f.prefix, i)
		t0 = time.Now()
		if _, err := admin.Exec(ctx, "CREATE DATABASE "+ident(name)+" TEMPLATE "+ident(tpl)); err != nil {
			b.Fatal(err)
		}
		cc := p.connConfig(name)
		connectQuery(b, &cc.Config)
		syncClone = append(syncClone, time.Since(t0))
		if _, err := admin.Exec(ctx, "DROP DATABASE "+ident(name)+" WITH (FORCE)"); err != nil {
			b.Fatal(err)
		}
	}
	w, s := median(warm), median(syncClone)
	b.ReportMetric(msOf(median(acquire)), "acquire-p50-ms")
	b.ReportMetric(msOf(w), "warm-ms/op")
	b.ReportMetric(msOf(s), "sync-ms/op")
	b.ReportMetric(float64(s)/float64(w), "speedup-x")
}

// BenchmarkAcquireWarm measures Acquire + Release alone on a pool that keeps up (tx
// mode, clean releases: the clone goes straight back).
func BenchmarkAcquireWarm(b *testing.B) {
	f := newFixture(b)
	cfg := f.config(map[string]Migrator{"": newMigDir(b, benchSchema())})
	p := f.pool(cfg)
	ctx := context.Background()
	acquireBench(b, p).Release(ctx, true)
	waitReady(b, p, cfg.PoolSize)
	var acquire []time.Duration
	for b.Loop() {
		t0 := time.Now()
		l, err := p.Acquire(ctx, "", leasemode.Tx)
		if err != nil {
			b.Fatal(err)
		}
		acquire = append(acquire, time.Since(t0))
		l.Release(ctx, true)
	}
	b.ReportMetric(msOf(median(acquire)), "acquire-p50-ms")
}

// BenchmarkCloneThroughput measures CREATE DATABASE … TEMPLATE throughput per strategy
// with 1, 2 and 4 cloners at once (drops not counted).
func BenchmarkCloneThroughput(b *testing.B) {
	f := newFixture(b)
	p := f.pool(f.config(map[string]Migrator{"": newMigDir(b, benchSchema())}))
	acquireBench(b, p).Release(context.Background(), true)
	tpl := p.templates[""].cur.Load().datname
	strategies := []string{""}
	if p.major >= 15 {
		strategies = []string{"WAL_LOG", "FILE_COPY"}
	}
	var seq atomic.Int64
	for _, strategy := range strategies {
		for _, par := range []int{1, 2, 4} {
			b.Run(fmt.Sprintf("strategy=%s/cloners=%d", strategy, par), func(b *testing.B) {
				clause := ""
				if strategy != "" {
					clause = " STRATEGY " + strategy
				}
				conns := make([]*pgx.Conn, par)
				for i := range conns {
					c, err := pgx.Connect(context.Background(), f.admin)
					if err != nil {
						b.Fatal(err)
					}
					defer c.Close(context.Background())
					conns[i] = c
				}
				var mu sync.Mutex
				var made []string
				var left atomic.Int64
				left.Store(int64(b.N))
				b.ResetTimer()
				var wg sync.WaitGroup
				for _, c := range conns {
					wg.Go(func() {
						for left.Add(-1) >= 0 {
							name := fmt.Sprintf("%sbench_%d", f.prefix, seq.Add(1))
							if _, err := c.Exec(context.Background(), "CREATE DATABASE "+ident(name)+" TEMPLATE "+ident(tpl)+clause); err != nil {
								b.Error(err)
								return
							}
							mu.Lock()
							made = append(made, name)
							mu.Unlock()
						}
					})
				}
				wg.Wait()
				elapsed := b.Elapsed()
				b.StopTimer()
				b.ReportMetric(float64(b.N)/elapsed.Seconds(), "clones/s")
				for i, name := range made {
					if _, err := conns[i%par].Exec(context.Background(), "DROP DATABASE "+ident(name)+" WITH (FORCE)"); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

func acquireBench(b *testing.B, p *Pool) *Lease {
	l, err := p.Acquire(context.Background(), "", leasemode.DB)
	if err != nil {
		b.Fatal(err)
	}
	return l
}

func waitReady(b *testing.B, p *Pool, n int) {
	eventually(b, "pool to fill", func() bool {
		s, err := p.Stats(context.Background())
		return err == nil && s[0].Ready >= n
	})
}
