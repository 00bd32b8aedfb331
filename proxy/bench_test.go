package proxy

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgtestproxy/pgtestproxy/internal/leasemode"
	"github.com/pgtestproxy/pgtestproxy/internal/testpg"
)

// warmProvider leases databases cloned before the benchmark starts, as the pool's warm
// clones are, and takes them back on Release instead of dropping them, with the
// backend a tx-mode lease kept in them.
type warmProvider struct {
	cfgs  map[string]*pgconn.Config
	ready chan string

	mu   sync.Mutex
	kept map[string]*KeptBackend
}

// newWarmProvider clones n databases from a test template, after running setup on it.
func newWarmProvider(b *testing.B, n int, setup ...string) *warmProvider {
	b.Helper()
	tpl := newTemplate(b)
	for _, sql := range setup {
		testpg.Exec(b, testpg.URL(b, tpl), sql)
	}
	p := &warmProvider{cfgs: map[string]*pgconn.Config{}, ready: make(chan string, n), kept: map[string]*KeptBackend{}}
	b.Cleanup(func() {
		for _, k := range p.kept {
			_ = k.Close()
		}
	})
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
		p.mu.Lock()
		defer p.mu.Unlock()
		l := &warmLease{p: p, name: name, kept: p.kept[name]}
		delete(p.kept, name)
		return l, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

type warmLease struct {
	p          *warmProvider
	name       string
	kept, keep *KeptBackend
}

func (l *warmLease) ConnConfig() *pgconn.Config { return l.p.cfgs[l.name].Copy() }
func (l *warmLease) Database() string           { return l.name }
func (l *warmLease) Keep(c *KeptBackend)        { l.keep = c }
func (l *warmLease) Kept() *KeptBackend {
	k := l.kept
	l.kept = nil
	return k
}

func (l *warmLease) Release(_ context.Context, clean bool) {
	if l.kept != nil {
		_ = l.kept.Close()
	}
	if l.keep != nil {
		if clean {
			l.p.mu.Lock()
			l.p.kept[l.name] = l.keep
			l.p.mu.Unlock()
		} else {
			_ = l.keep.Close()
		}
	}
	l.p.ready <- l.name
}

// BenchmarkConnectSelect1 measures connect + SELECT 1 + close through the proxy in db
// mode (warm leases) and in tx mode against the same on a direct connection to the
// same server, interleaved in one run. It reports direct-ns/op, proxy-ns/op and
// proxy/direct (the goal is at most 1.5 in db mode, below 1 in tx mode, where the
// lease reuses the backend that the clone kept instead of starting one).
func BenchmarkConnectSelect1(b *testing.B) {
	for _, mode := range []leasemode.Mode{leasemode.DB, leasemode.Tx} {
		b.Run(string(mode), func(b *testing.B) { benchmarkConnectSelect1(b, mode) })
	}
}

func benchmarkConnectSelect1(b *testing.B, mode leasemode.Mode) {
	p := newWarmProvider(b, 4)
	s := startProxy(b, Config{Provider: p, Logger: nopLogger(), Linger: -1})
	var direct string
	for name := range p.cfgs {
		direct = testpg.URL(b, name)
		break
	}
	directCfg, err := pgx.ParseConfig(direct)
	if err != nil {
		b.Fatal(err)
	}
	proxyCfg, err := pgx.ParseConfig(modeURL(s, mode, "app"))
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

var _ BackendKeeper = (*warmLease)(nil)
