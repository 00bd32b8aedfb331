package proxy

import (
	"fmt"
	"maps"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/pgtestproxy/pgtestproxy/internal/histo"
	"github.com/pgtestproxy/pgtestproxy/internal/leasemode"
	"github.com/pgtestproxy/pgtestproxy/proxy/internal/wire"
)

// Stats are the server's counters since it started. SHOW STATS and the Prometheus
// collector in cmd both read them, so the console and the metrics never disagree.
type Stats struct {
	SessionsTotal  int64 // client sessions that completed startup (relay and admin console)
	SessionsActive int64 // client sessions open now
	LeasesTotal    int64 // leases acquired from the provider
	LeasesActive   int64 // leases held now, lingering ones included
	BytesIn        int64 // bytes relayed from clients to the upstream
	BytesOut       int64 // bytes relayed from the upstream to clients
	Cancels        int64 // cancel requests forwarded to the upstream
	Errors         int64 // errors sent to clients by the proxy itself
	Panics         int64 // panics recovered (a bug): each ended one session, or one shared tx lease
	Goroutines     int64 // goroutines in the process now (runtime.NumGoroutine): a leak shows here
	AheadTaken     int64 // db-mode connections that took a lease and backend connected ahead (ahead.go)
	AheadReady     int64 // leases with a backend connected ahead, waiting for their client now

	// Modes holds the per-mode counters, for leasemode.DB and leasemode.Tx.
	Modes map[leasemode.Mode]ModeStats
	// ErrorsByCode counts Errors by SQLSTATE.
	ErrorsByCode map[string]int64
}

// ModeStats are the counters of one lease mode.
type ModeStats struct {
	SessionsTotal  int64          // leased sessions of this mode (the console's are in neither)
	SessionsActive int64          // of them, open now
	LeasesTotal    int64          // leases acquired
	LeasesActive   int64          // leases held now
	AcquireErrors  int64          // acquisitions the provider refused
	Acquire        histo.Snapshot // acquisition latency, failed ones included
}

// counters is the live form of Stats.
type counters = wire.Counters

// modeCounters returns the live counters of mode m.
func modeCounters(c *counters, m leasemode.Mode) *wire.ModeCounters {
	if m == leasemode.Tx {
		return &c.Tx
	}
	return &c.DB
}

func snapshot(c *counters) Stats {
	s := Stats{
		SessionsTotal:  c.SessionsTotal.Load(),
		SessionsActive: c.SessionsActive.Load(),
		LeasesTotal:    c.LeasesTotal.Load(),
		LeasesActive:   c.LeasesActive.Load(),
		BytesIn:        c.BytesIn.Load(),
		BytesOut:       c.BytesOut.Load(),
		Cancels:        c.Cancels.Load(),
		Errors:         c.Errors.Load(),
		Panics:         c.Panics.Load(),
		Goroutines:     int64(runtime.NumGoroutine()),
		AheadTaken:     c.AheadTaken.Load(),
		AheadReady:     c.AheadReady.Load(),
		Modes:          map[leasemode.Mode]ModeStats{},
		ErrorsByCode:   c.ErrorsByCode(),
	}
	for _, m := range []leasemode.Mode{leasemode.DB, leasemode.Tx} {
		mc := modeCounters(c, m)
		s.Modes[m] = ModeStats{SessionsTotal: mc.SessionsTotal.Load(), SessionsActive: mc.SessionsActive.Load(),
			LeasesTotal: mc.LeasesTotal.Load(), LeasesActive: mc.LeasesActive.Load(),
			AcquireErrors: mc.AcquireErrors.Load(), Acquire: mc.Acquire.Snapshot()}
	}
	return s
}

// table returns the stats as SHOW STATS shows them: one row, one column per counter,
// then extra's columns (the lease provider's counters).
func (s Stats) table(extra []string, extraRow []string) (columns []string, rows [][]string) {
	columns = []string{"sessions_total", "sessions_active", "leases_total", "leases_active",
		"bytes_in", "bytes_out", "cancels", "errors", "panics"}
	vals := []int64{s.SessionsTotal, s.SessionsActive, s.LeasesTotal, s.LeasesActive,
		s.BytesIn, s.BytesOut, s.Cancels, s.Errors, s.Panics}
	row := make([]string, len(vals), len(vals)+20)
	for i, v := range vals {
		row[i] = strconv.FormatInt(v, 10)
	}
	for _, m := range []leasemode.Mode{leasemode.DB, leasemode.Tx} {
		ms := s.Modes[m]
		columns = append(columns, "acquires_"+string(m), "acquire_errors_"+string(m),
			"acquire_p50_ms_"+string(m), "acquire_p99_ms_"+string(m), "sessions_active_"+string(m))
		row = append(row, strconv.FormatUint(ms.Acquire.Count, 10), strconv.FormatInt(ms.AcquireErrors, 10),
			millis(ms.Acquire.Quantile(0.5)), millis(ms.Acquire.Quantile(0.99)), strconv.FormatInt(ms.SessionsActive, 10))
	}
	codes := slices.Sorted(maps.Keys(s.ErrorsByCode))
	byCode := make([]string, len(codes))
	for i, c := range codes {
		byCode[i] = fmt.Sprintf("%s=%d", c, s.ErrorsByCode[c])
	}
	columns = append(columns, "errors_by_sqlstate", "goroutines", "ahead_taken", "ahead_ready")
	row = append(row, strings.Join(byCode, ","), strconv.FormatInt(s.Goroutines, 10),
		strconv.FormatInt(s.AheadTaken, 10), strconv.FormatInt(s.AheadReady, 10))
	return append(columns, extra...), [][]string{append(row, extraRow...)}
}

// millis formats d in milliseconds with one decimal.
func millis(d time.Duration) string {
	return strconv.FormatFloat(float64(d)/float64(time.Millisecond), 'f', 1, 64)
}
