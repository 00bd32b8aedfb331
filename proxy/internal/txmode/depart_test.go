package txmode

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"
)

// Attach's wait for the sessions whose clients left ends with its ctx (shutdown):
// the caller gets ctx's error instead of a wait that never returns.
func TestAttachWaitHonoursContext(t *testing.T) {
	l := &Lease{}
	l.left = sync.NewCond(&l.mu)
	l.conn = &txConn{sessions: []*Session{{left: true}}} // its detach never comes
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		defer func() {
			if r := recover(); r != nil { // it went on to attach, on a lease with no backend
				done <- errors.New("Attach went on after its context ended")
			}
		}()
		_, err := l.Attach(ctx, nil, Startup{})
		done <- err
	}()
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("Attach returned %v, want context.Canceled", err)
		}
	case <-time.After(time.Minute):
		t.Fatal("Attach did not return after its context ended")
	}
}
