package proxy

import (
	"strconv"
	"sync/atomic"
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
}

// counters is the live form of Stats.
type counters struct {
	sessionsTotal, sessionsActive atomic.Int64
	leasesTotal, leasesActive     atomic.Int64
	bytesIn, bytesOut             atomic.Int64
	cancels, errors               atomic.Int64
}

func (c *counters) snapshot() Stats {
	return Stats{
		SessionsTotal:  c.sessionsTotal.Load(),
		SessionsActive: c.sessionsActive.Load(),
		LeasesTotal:    c.leasesTotal.Load(),
		LeasesActive:   c.leasesActive.Load(),
		BytesIn:        c.bytesIn.Load(),
		BytesOut:       c.bytesOut.Load(),
		Cancels:        c.cancels.Load(),
		Errors:         c.errors.Load(),
	}
}

// table returns the stats as SHOW STATS shows them: one row, one column per counter.
func (s Stats) table() (columns []string, rows [][]string) {
	columns = []string{"sessions_total", "sessions_active", "leases_total", "leases_active",
		"bytes_in", "bytes_out", "cancels", "errors"}
	vals := []int64{s.SessionsTotal, s.SessionsActive, s.LeasesTotal, s.LeasesActive,
		s.BytesIn, s.BytesOut, s.Cancels, s.Errors}
	row := make([]string, len(vals))
	for i, v := range vals {
		row[i] = strconv.FormatInt(v, 10)
	}
	return columns, [][]string{row}
}
