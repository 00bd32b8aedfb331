package proxy

import (
	"runtime"
	"strconv"

	"github.com/pgtestproxy/pgtestproxy/proxy/internal/wire"
)

// Stats are the server's counters since it started.
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
}

// counters is the live form of Stats.
type counters = wire.Counters

func snapshot(c *counters) Stats {
	return Stats{
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
	}
}

// table returns the stats as SHOW STATS shows them: one row, one column per counter.
func (s Stats) table() (columns []string, rows [][]string) {
	columns = []string{"sessions_total", "sessions_active", "leases_total", "leases_active",
		"bytes_in", "bytes_out", "cancels", "errors", "panics", "goroutines"}
	vals := []int64{s.SessionsTotal, s.SessionsActive, s.LeasesTotal, s.LeasesActive,
		s.BytesIn, s.BytesOut, s.Cancels, s.Errors, s.Panics, s.Goroutines}
	row := make([]string, len(vals))
	for i, v := range vals {
		row[i] = strconv.FormatInt(v, 10)
	}
	return columns, [][]string{row}
}
