package proxy

import (
	"context"
	"errors"
	"testing"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/pgtestproxy/pgtestproxy/internal/leasemode"
)

// waitingProvider is a provider with no clone to give: Acquire waits until its
// context ends and reports that on ended.
type waitingProvider struct {
	started chan struct{}
	ended   chan error
}

func (p *waitingProvider) Acquire(ctx context.Context, _ LeaseRequest) (Lease, error) {
	p.started <- struct{}{}
	<-ctx.Done()
	p.ended <- ctx.Err()
	return nil, ctx.Err()
}

// TestAcquireEndsWhenClientLeaves: a client that leaves while it waits for a clone
// ends its Acquire, so that the pool stops counting (and building for) it (issue 11
// item 5: after a burst the refill built for clients long gone). With a session key
// the acquire serves other connections too and goes on.
func TestAcquireEndsWhenClientLeaves(t *testing.T) {
	t.Parallel()
	for _, mode := range []leasemode.Mode{leasemode.DB, leasemode.Tx} {
		t.Run(string(mode), func(t *testing.T) {
			t.Parallel()
			p := &waitingProvider{started: make(chan struct{}, 1), ended: make(chan error, 1)}
			s := startProxy(t, Config{Provider: p, Logger: nopLogger()})
			c := rawConn(t, s)
			if _, err := c.Write(encode(t, &pgproto3.StartupMessage{ProtocolVersion: pgproto3.ProtocolVersion30,
				Parameters: map[string]string{"user": "u", "database": "app", "mode": string(mode)}})); err != nil {
				t.Fatal(err)
			}
			ctx := testContext(t)
			select {
			case <-p.started:
			case <-ctx.Done():
				t.Fatal("the proxy never asked for a lease")
			}
			_ = c.Close()
			select {
			case err := <-p.ended:
				if !errors.Is(err, context.Canceled) {
					t.Fatalf("Acquire ended with %v, want context.Canceled", err)
				}
			case <-ctx.Done():
				t.Fatal("Acquire went on after its client left")
			}
		})
	}
}
