package txmode

import (
	"context"
	"fmt"
	"net"
	"time"

	"github.com/pgtestproxy/pgtestproxy/proxy/internal/wire"
)

// A client that closes a connection of a session key and opens the next at once can
// reach Attach before the proxy has read the first one's Terminate: its session still
// counts as attached, and the new connection would join it (sharing its settings,
// temporary tables, …) instead of getting the per-connection reset. So Attach first
// waits, for at most departWait, while an attached session's client pump waits at a
// message boundary and its socket has input it has not read yet (bytes or the end of
// the stream): that input is taken within moments, and either it is a Terminate (the
// session leaves, and the new connection is reset as after any departure) or it is
// not (the connection is open together with the new one, and the new one joins it).

// departWait bounds Attach's wait for sessions whose next input is on its way.
const departWait = time.Second

// awaitDepartures waits until no attached session is on its way out (see above), or
// every one is gone, or ctx ends (its error is returned). l.mu is held.
func (l *Lease) awaitDepartures(ctx context.Context) error {
	stop := context.AfterFunc(ctx, l.wake)
	defer stop()
	var bound *time.Timer
	expired := false // under l.mu
	defer func() {
		if bound != nil {
			bound.Stop()
			l.departWaits.Add(-1)
		}
	}()
	for l.conn != nil && ctx.Err() == nil {
		switch {
		case l.conn.allLeaving():
		case !expired && l.conn.departing():
			if bound == nil {
				l.guard.At("tx attach departing")
				l.departWaits.Add(1)
				bound = time.AfterFunc(departWait, func() {
					l.mu.Lock()
					defer l.mu.Unlock()
					expired = true
					l.left.Broadcast()
				})
			}
		default:
			return nil
		}
		l.left.Wait()
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("wait for the session key's connections that left: %w", err)
	}
	return nil
}

// wake wakes Attach's waits.
func (l *Lease) wake() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.left.Broadcast()
}

// tookInput tells Attach, if it waits for departures, that a session's pump read a
// message after waiting for one (so the session is not leaving). It never blocks.
func (l *Lease) tookInput() {
	if l.departWaits.Load() > 0 {
		go l.wake()
	}
}

// departing reports whether the client pump of a session not yet leaving waits for
// its client's next message while that client's socket has input not yet read.
func (c *txConn) departing() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, s := range c.sessions {
		if !s.left && s.idle.Load() && inputWaiting(s.client) {
			return true
		}
	}
	return false
}

// inputWaiting reports whether the client's socket has something the proxy has not
// read yet: bytes, or the end of the stream (a client that closed). It takes nothing
// from the socket and never waits.
func inputWaiting(conn net.Conn) bool {
	data, closed := wire.Unread(conn)
	return data || closed
}
