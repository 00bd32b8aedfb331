package proxy

import (
	"context"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"go.uber.org/zap"
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
func (s *txSession) watch() {
	defer s.cancels.Done()
	ctx, cancel := context.WithTimeout(context.Background(), cancelTimeout)
	defer cancel()
	conn, err := pgconn.ConnectConfig(ctx, s.be.watchConfig)
	if err != nil {
		s.log.Debug("watch the backend for a held cancel request", zap.Error(err))
		s.stopWatching()
		return
	}
	defer conn.Close(context.Background())
	pid := int64(s.be.cancel.pid)
	for ctx.Err() == nil {
		if !s.stillHeld() {
			return
		}
		res := conn.ExecParams(ctx, "SELECT state = 'active' AND query NOT IN ($2, $3) FROM pg_catalog.pg_stat_activity WHERE pid = $1",
			[][]byte{[]byte(itoa64(pid)), []byte(sqlRelease), []byte(sqlSavepoint)}, nil, nil, nil).Read()
		if res.Err == nil && len(res.Rows) == 1 && string(res.Rows[0][0]) == "t" {
			s.deliverHeld(ctx)
			return
		}
		time.Sleep(txWatchInterval)
	}
	s.stopWatching()
}

// stillHeld reports whether a CancelRequest is held and only the savepoint statements
// at the start of a unit hold it.
func (s *txSession) stillHeld() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	ok := s.cancelled && s.failure == nil && s.q.guards > 0 && s.q.guards == s.q.prefixes
	if !ok {
		s.watching = false
	}
	return ok
}

// deliverHeld delivers the held CancelRequest, unless it was delivered or dropped.
func (s *txSession) deliverHeld(ctx context.Context) {
	s.mu.Lock()
	s.watching = false
	if !s.cancelled {
		s.mu.Unlock()
		return
	}
	s.cancelled = false
	s.inflight++
	s.mu.Unlock()
	if err := s.deliver(ctx); err != nil {
		s.log.Warn("forward held cancel request", zap.Error(err))
	}
}

func (s *txSession) stopWatching() {
	s.mu.Lock()
	s.watching = false
	s.mu.Unlock()
}

func itoa64(n int64) string { return strconv.FormatInt(n, 10) }
