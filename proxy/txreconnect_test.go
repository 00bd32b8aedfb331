package proxy

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgtestproxy/pgtestproxy/internal/leasemode"
)

// A client that closes its connection of a session key and reconnects at once, before
// the proxy has read the first connection's Terminate, gets the per-connection reset
// (its own settings, none of the first one's), as after any departure: the reconnect
// waits until the first session has taken what its client sent (README FAQ). The
// proxy's hooks hold the first session's client pump just before it reads the
// Terminate, and let it go once the reconnect waits for it; without the wait the
// reconnect joins the first session at once.
func TestTxReconnectAtOnceGetsReset(t *testing.T) {
	t.Parallel()
	var armed atomic.Bool
	held, release, waiting := make(chan struct{}), make(chan struct{}), make(chan struct{})
	var waitOnce sync.Once
	hook := func(where string) {
		switch where {
		case "tx client idle":
			if armed.CompareAndSwap(true, false) {
				close(held)
				<-release
			}
		case "tx attach departing":
			waitOnce.Do(func() { close(waiting) })
		}
	}
	s := startProxy(t, Config{Provider: newTestProvider(t), panicHook: hook, Linger: 10 * time.Second})
	ctx := testContext(t)
	url := modeURL(s, leasemode.Tx, "app", "session=reconnect")
	first := connect(t, url)
	mustExec(t, first, "SET application_name = 'leaky'")
	armed.Store(true)
	if _, err := first.PgConn().Exec(ctx, "SELECT 1").ReadAll(); err != nil { // the pump goes idle after it
		t.Fatal(err)
	}
	select {
	case <-held:
	case <-ctx.Done():
		t.Fatal("the first session's client pump never went idle")
	}
	_ = first.Close(ctx) // Terminate, then the socket closes; the pump is held before it reads them

	type result struct {
		c   *pgx.Conn
		err error
	}
	next := make(chan result, 1)
	go func() {
		c, err := pgx.Connect(ctx, url)
		next <- result{c, err}
	}()
	var r result
	select {
	case <-waiting: // the reconnect waits for the first session's input to be taken
		close(release)
		r = <-next
	case r = <-next: // it joined the first session while its Terminate was unread
		close(release)
	}
	if r.err != nil {
		t.Fatal(r.err)
	}
	defer r.c.Close(context.Background())
	if st := readLeaseState(t, ctx, r.c); st.app == "leaky" {
		t.Fatal("the reconnect sees the first connection's settings: it joined its session instead of being reset")
	}
	noPanics(t, s)
}
