package wire

import (
	"maps"
	"sync"
	"sync/atomic"

	"github.com/pgtestproxy/pgtestproxy/internal/histo"
)

// Counters are the proxy's live counters, which every kind of session adds to.
type Counters struct {
	SessionsTotal, SessionsActive atomic.Int64
	LeasesTotal, LeasesActive     atomic.Int64
	BytesIn, BytesOut             atomic.Int64
	Cancels, Errors               atomic.Int64
	Panics                        atomic.Int64 // panics recovered (a bug): each ended a session or a shared lease
	AheadTaken                    atomic.Int64 // db-mode connections that took a backend connected ahead
	AheadReady                    atomic.Int64 // backends connected ahead, waiting for their client now

	// DB and Tx count what happened in each lease mode (see the proxy's ModeOf).
	DB, Tx ModeCounters

	mu     sync.Mutex
	byCode map[string]int64 // errors sent, by SQLSTATE
}

// ModeCounters are the counters kept per lease mode.
type ModeCounters struct {
	SessionsTotal, SessionsActive atomic.Int64
	LeasesTotal, LeasesActive     atomic.Int64
	AcquireErrors                 atomic.Int64    // acquisitions the provider refused
	Acquire                       histo.Histogram // how long acquisitions took (failed ones included)
}

// Error counts one error sent to a client, under its SQLSTATE.
func (c *Counters) Error(code string) {
	c.Errors.Add(1)
	c.mu.Lock()
	if c.byCode == nil {
		c.byCode = map[string]int64{}
	}
	c.byCode[code]++
	c.mu.Unlock()
}

// ErrorsByCode returns a copy of the errors sent, by SQLSTATE.
func (c *Counters) ErrorsByCode() map[string]int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return maps.Clone(c.byCode)
}
