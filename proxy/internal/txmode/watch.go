package txmode

import (
	"context"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"go.uber.org/zap"

	"github.com/pgtestproxy/pgtestproxy/proxy/internal/wire"
)

// txWatchInterval is how often a held CancelRequest looks at the backend's activity.
const txWatchInterval = time.Millisecond

// The proxy's savepoint statements at the start of a unit go to the server with the
// client's statement, and the server answers them together, when the statement is
// done: until then the proxy cannot tell from the replies whether the savepoint
// statements still run, and a CancelRequest that hit them would cost the client work
// it was told is committed. So a CancelRequest that arrives meanwhile is held and the
// backend watched, on a connection of its own, in pg_stat_activity: once the backend
// runs something that is not one of the proxy's statements, it is the client's, and
// the request is delivered. (Without track_activities the request waits until the
// client's statement is done.)

// watch delivers the held CancelRequest once the client's statement runs; it gives up
// when the request is no longer held (delivered, or nothing left to cancel).
func (c *txConn) watch() {
	defer c.cancels.Done()
	defer c.contain("tx cancel watcher")
	c.guard.At("tx cancel watcher")
	ctx, cancel := context.WithTimeout(context.Background(), wire.CancelTimeout)
	defer cancel()
	conn, err := pgconn.ConnectConfig(ctx, c.be.watchConfig)
	if err != nil {
		c.log.Debug("watch the backend for a held cancel request", zap.Error(err))
		c.stopWatching()
		return
	}
	defer conn.Close(context.Background())
	pid := int64(c.be.cancel.PID())
	for ctx.Err() == nil {
		if !c.stillHeld() {
			return
		}
		res := conn.ExecParams(ctx, "SELECT state = 'active' AND query NOT IN ($2, $3) FROM pg_catalog.pg_stat_activity WHERE pid = $1",
			[][]byte{[]byte(itoa64(pid)), []byte(sqlRelease), []byte(sqlSavepoint)}, nil, nil, nil).Read()
		if res.Err == nil && len(res.Rows) == 1 && string(res.Rows[0][0]) == "t" {
			c.deliverHeld(ctx)
			return
		}
		time.Sleep(txWatchInterval)
	}
	c.stopWatching()
}

// stillHeld reports whether a CancelRequest is held for the session whose statement
// comes next, behind nothing of the proxy's but the savepoint statements at the start
// of a unit.
func (c *txConn) stillHeld() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	p := c.q.front()
	ok := c.held != nil && p != nil && p.owner == c.held && c.failure == nil && c.q.guards == c.q.prefixes
	if !ok {
		c.watching = false
	}
	return ok
}

// deliverHeld delivers the held CancelRequest, unless it was delivered or dropped.
func (c *txConn) deliverHeld(ctx context.Context) {
	c.mu.Lock()
	c.watching = false
	if c.held == nil {
		c.mu.Unlock()
		return
	}
	c.held = nil
	c.inflight++
	c.mu.Unlock()
	if err := c.deliver(ctx); err != nil {
		c.log.Warn("forward held cancel request", zap.Error(err))
	}
}

func (c *txConn) stopWatching() {
	c.mu.Lock()
	c.watching = false
	c.mu.Unlock()
}

func itoa64(n int64) string { return strconv.FormatInt(n, 10) }
