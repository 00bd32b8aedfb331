package proxy

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgtestproxy/pgtestproxy/internal/testpg"
)

// warmProvider leases databases cloned before the benchmark starts, as the pool's warm
// clones are, and takes them back on Release instead of dropping them.
type warmProvider struct {
	cfgs  map[string]*pgconn.Config
	ready chan string
}

func newWarmProvider(b *testing.B, n int) *warmProvider {
	b.Helper()
	tpl := newTemplate(b)
	p := &warmProvider{cfgs: map[string]*pgconn.Config{}, ready: make(chan string, n)}
	for range n {
		name := testpg.UniqueName(b, "w_")
		testpg.Exec(b, testpg.AdminURL(b), "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()+" TEMPLATE "+pgx.Identifier{tpl}.Sanitize())
		b.Cleanup(func() { dropDatabase(b, name) })
		cfg, err := pgconn.ParseConfig(testpg.URL(b, name))
		if err != nil {
			b.Fatal(err)
		}
		p.cfgs[name] = cfg
		p.ready <- name
	}
	return p
}

func (p *warmProvider) Acquire(ctx context.Context, _ LeaseRequest) (Lease, error) {
	select {
	case name := <-p.ready:
		return &warmLease{p: p, name: name}, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

type warmLease struct {
	p    *warmProvider
	name string
}

func (l *warmLease) ConnConfig() *pgconn.Config    { return l.p.cfgs[l.name].Copy() }
func (l *warmLease) Database() string              { return l.name }
func (l *warmLease) Release(context.Context, bool) { l.p.ready <- l.name }

// BenchmarkConnectSelect1 measures connect + SELECT 1 + close through the proxy in db
// mode (warm leases) against the same on a direct connection to the same server,
// interleaved in one run. It reports direct-ns/op, proxy-ns/op and proxy/direct (the
// goal is at most 1.5).
func BenchmarkConnectSelect1(b *testing.B) {
	p := newWarmProvider(b, 4)
	s := startProxy(b, Config{Provider: p, Logger: nopLogger()})
	var direct string
	for name := range p.cfgs {
		direct = testpg.URL(b, name)
		break
	}
	directCfg, err := pgx.ParseConfig(direct)
	if err != nil {
		b.Fatal(err)
	}
	proxyCfg, err := pgx.ParseConfig(proxyURL(s, "app"))
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	once := func(cfg *pgx.ConnConfig) time.Duration {
		start := time.Now()
		c, err := pgx.ConnectConfig(ctx, cfg)
		if err != nil {
			b.Fatal(err)
		}
		var one int
		if err := c.QueryRow(ctx, "SELECT 1").Scan(&one); err != nil {
			b.Fatal(err)
		}
		if err := c.Close(ctx); err != nil {
			b.Fatal(err)
		}
		return time.Since(start)
	}
	once(directCfg)
	once(proxyCfg)
	var directTotal, proxyTotal time.Duration
	for b.Loop() {
		directTotal += once(directCfg)
		proxyTotal += once(proxyCfg)
	}
	b.ReportMetric(float64(directTotal.Nanoseconds())/float64(b.N), "direct-ns/op")
	b.ReportMetric(float64(proxyTotal.Nanoseconds())/float64(b.N), "proxy-ns/op")
	b.ReportMetric(float64(proxyTotal)/float64(directTotal), "proxy/direct")
}
