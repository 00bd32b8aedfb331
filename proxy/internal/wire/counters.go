package wire

import "sync/atomic"

// Counters are the proxy's live counters, which every kind of session adds to.
type Counters struct {
	SessionsTotal, SessionsActive atomic.Int64
	LeasesTotal, LeasesActive     atomic.Int64
	BytesIn, BytesOut             atomic.Int64
	Cancels, Errors               atomic.Int64
	Panics                        atomic.Int64 // panics recovered (a bug): each ended a session or a shared lease
}
