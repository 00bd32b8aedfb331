package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.uber.org/zap"

	"github.com/pgtestproxy/pgtestproxy/internal/histo"
	"github.com/pgtestproxy/pgtestproxy/pool"
	"github.com/pgtestproxy/pgtestproxy/proxy"
)

// The metrics are a view, not a second set of counters: the proxy and the pool keep
// their counters (atomics and internal/histo histograms) as the admin console reads
// them, and the collector below turns them into Prometheus metrics at scrape time. So
// SHOW STATS and /metrics can never disagree, and neither package depends on the
// Prometheus client.

// scrapeTimeout bounds the catalog query a scrape or a readiness check makes.
const scrapeTimeout = 5 * time.Second

// metricsServer serves /metrics, /healthz and /readyz on --metrics-listen.
type metricsServer struct {
	srv  *http.Server
	ln   net.Listener
	done chan struct{}
}

// startMetrics listens on addr and serves the stack's metrics until close.
func startMetrics(addr string, st *stack, log *zap.Logger) (*metricsServer, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("--metrics-listen %s: %w", addr, err)
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(&collector{proxy: st.proxy, pool: st.pool},
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		if err := ready(r.Context(), st.pool); err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ready")
	})
	m := &metricsServer{ln: ln, done: make(chan struct{}),
		srv: &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, ErrorLog: zap.NewStdLog(log)}}
	go func() {
		defer close(m.done)
		if err := m.srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			log.Error("metrics server", zap.Error(err))
		}
	}()
	return m, nil
}

// close stops the server and waits for it.
func (m *metricsServer) close() {
	_ = m.srv.Close()
	<-m.done
}

// ready reports why the proxy cannot serve a lease at once: the upstream does not
// answer, or a configured template is not built yet.
func ready(ctx context.Context, p *pool.Pool) error {
	ctx, cancel := context.WithTimeout(ctx, scrapeTimeout)
	defer cancel()
	stats, err := p.Stats(ctx)
	if err != nil {
		return fmt.Errorf("upstream not reachable: %w", err)
	}
	for _, s := range stats {
		if s.Hash == "" {
			return fmt.Errorf("template %s not built yet", templateName(s.Name))
		}
	}
	return nil
}

// collector exposes the proxy's and the pool's counters.
type collector struct {
	proxy *proxy.Server
	pool  *pool.Pool
}

func desc(name, help string, labels ...string) *prometheus.Desc {
	return prometheus.NewDesc("pgtestproxy_"+name, help, labels, nil)
}

var (
	descSessionsActive = desc("sessions_active", "Client sessions open now, by lease mode.", "mode")
	descSessionsTotal  = desc("sessions_total", "Client sessions started, by lease mode.", "mode")
	descConsoleActive  = desc("sessions_open", "Client sessions open now, admin console included.")
	descLeasesActive   = desc("leases_active", "Leases held now (lingering ones included), by mode.", "mode")
	descLeasesTotal    = desc("leases_total", "Leases acquired, by mode.", "mode")
	descAcquireErrors  = desc("acquire_errors_total", "Lease acquisitions that failed, by mode.", "mode")
	descAcquire        = desc("acquire_duration_seconds", "How long lease acquisitions took, by mode.", "mode")
	descBytes          = desc("relayed_bytes_total", "Bytes relayed, by direction (in: client to upstream).", "direction")
	descCancels        = desc("cancels_total", "Cancel requests forwarded to the upstream.")
	descAheadTaken     = desc("ahead_taken_total", "db-mode connections that took a lease and backend connected ahead of them.")
	descAheadReady     = desc("ahead_ready", "Leases with a backend connected ahead, waiting for their db-mode client now.")
	descErrors         = desc("errors_total", "Errors the proxy itself sent to clients, by SQLSTATE.", "sqlstate")
	descPanics         = desc("panics_recovered_total", "Panics recovered (each a bug; each ended one session).")
	descClonesMade     = desc("clones_made_total", "Clones this process created.")
	descClonesDropped  = desc("clones_dropped_total", "Clones this process dropped.")
	descReclaimed      = desc("clones_reclaimed_total", "Clones of dead proxies (or unfinished ones) GC dropped.")
	descClonesReused   = desc("clones_reused_total", "db-mode clones put back in the pool after a lease that changed nothing.")
	descClonesNotReuse = desc("clones_not_reused_total", "db-mode clones dropped after their lease (changed, or not judged unchanged).")
	descBuilds         = desc("template_builds_total", "Templates this process built.")
	descCloneTime      = desc("clone_duration_seconds", "How long CREATE DATABASE … TEMPLATE took.")
	descBuildTime      = desc("template_build_duration_seconds", "How long a template build (create, migrate, seal) took.")
	descPoolClones     = desc("pool_clones", "Clones per template and state, across all proxies sharing the catalog.", "template", "state")
	descTemplateBuilt  = desc("template_built", "1 when the template's current migrations are built.", "template")
	descUpstreamUp     = desc("upstream_up", "1 when the last scrape could read the catalog.")
)

func (c *collector) Describe(ch chan<- *prometheus.Desc) { prometheus.DescribeByCollect(c, ch) }

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	counter := func(d *prometheus.Desc, v int64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	s := c.proxy.Stats()
	for mode, m := range s.Modes {
		gauge(descSessionsActive, float64(m.SessionsActive), string(mode))
		counter(descSessionsTotal, m.SessionsTotal, string(mode))
		gauge(descLeasesActive, float64(m.LeasesActive), string(mode))
		counter(descLeasesTotal, m.LeasesTotal, string(mode))
		counter(descAcquireErrors, m.AcquireErrors, string(mode))
		ch <- histogram(descAcquire, m.Acquire, string(mode))
	}
	gauge(descConsoleActive, float64(s.SessionsActive))
	counter(descBytes, s.BytesIn, "in")
	counter(descBytes, s.BytesOut, "out")
	counter(descCancels, s.Cancels)
	counter(descAheadTaken, s.AheadTaken)
	gauge(descAheadReady, float64(s.AheadReady))
	for code, n := range s.ErrorsByCode {
		counter(descErrors, n, code)
	}
	counter(descPanics, s.Panics)

	pc := c.pool.Counters()
	counter(descClonesMade, pc.ClonesMade)
	counter(descClonesDropped, pc.ClonesDropped)
	counter(descReclaimed, pc.Reclaimed)
	counter(descClonesReused, pc.ClonesReused)
	counter(descClonesNotReuse, pc.ClonesNotReused)
	counter(descBuilds, pc.Builds)
	ch <- histogram(descCloneTime, pc.CloneTime)
	ch <- histogram(descBuildTime, pc.BuildTime)

	ctx, cancel := context.WithTimeout(context.Background(), scrapeTimeout)
	defer cancel()
	stats, err := c.pool.Stats(ctx)
	if err != nil {
		gauge(descUpstreamUp, 0)
		return
	}
	gauge(descUpstreamUp, 1)
	for _, t := range stats {
		name := templateName(t.Name)
		gauge(descPoolClones, float64(t.Ready), name, "ready")
		gauge(descPoolClones, float64(t.Leased), name, "leased")
		gauge(descPoolClones, float64(t.Creating), name, "creating")
		built := 0.0
		if t.Hash != "" {
			built = 1
		}
		gauge(descTemplateBuilt, built, name)
	}
}

// histogram turns a histo snapshot into a constant Prometheus histogram.
func histogram(d *prometheus.Desc, s histo.Snapshot, labels ...string) prometheus.Metric {
	buckets := make(map[float64]uint64, len(histo.Bounds))
	for i, b := range histo.Bounds {
		buckets[b] = s.Cumulative[i]
	}
	return prometheus.MustNewConstHistogram(d, s.Count, s.Sum.Seconds(), buckets, labels...)
}
