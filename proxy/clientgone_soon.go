package proxy

import (
	"context"
	"net"
	"sync"
	"time"
)

// goneWatchDelay is how long an acquire runs before watchGoneSoon starts watching the
// client: a lease the provider has at hand (a parked tx-mode clone, a warm db-mode
// one) comes back sooner, and a watch costs a goroutine, a peek and two socket
// deadlines on every connection.
const goneWatchDelay = time.Millisecond

// watchGoneSoon is watchGone started only once after has passed: a client that leaves
// is noticed, at most after later; one served before then costs a timer.
func watchGoneSoon(parent context.Context, c net.Conn, after time.Duration) (context.Context, func() (gone bool)) {
	ctx, cancel := context.WithCancel(parent)
	var mu sync.Mutex
	stopped := false
	var stopWatch func() bool
	t := time.AfterFunc(after, func() {
		mu.Lock()
		defer mu.Unlock()
		if stopped {
			return
		}
		watched, stop := watchGone(ctx, c)
		context.AfterFunc(watched, cancel) // the client left (or ctx ended)
		stopWatch = stop
	})
	return ctx, func() bool {
		t.Stop()
		mu.Lock()
		stopped = true
		stop := stopWatch
		mu.Unlock()
		gone := stop != nil && stop()
		cancel()
		return gone
	}
}
