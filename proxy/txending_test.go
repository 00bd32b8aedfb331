package proxy

import (
	"context"
	"slices"
	"sync"
	"testing"
)

// endingProvider is a testProvider whose leases record Ending and Release in order.
type endingProvider struct {
	*testProvider
	mu     sync.Mutex
	events []string
}

func (p *endingProvider) Acquire(ctx context.Context, req LeaseRequest) (Lease, error) {
	l, err := p.testProvider.Acquire(ctx, req)
	if err != nil {
		return nil, err
	}
	return &endingLease{testLease: l.(*testLease), p: p}, nil
}

func (p *endingProvider) record(e string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.events = append(p.events, e)
}

func (p *endingProvider) recorded() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.events)
}

type endingLease struct {
	*testLease
	p *endingProvider
}

func (l *endingLease) Ending() { l.p.record("ending") }

func (l *endingLease) Release(ctx context.Context, clean bool) {
	if clean {
		l.p.record("release clean")
	} else {
		l.p.record("release unclean")
	}
	l.testLease.Release(ctx, clean)
}

// TestTxReleaseSaysEnding: a tx-mode lease released clean tells a provider that has
// Ending before it resets the backend, so that the provider's next tx lease of the
// template can wait for this clone; a lease released unclean does not.
func TestTxReleaseSaysEnding(t *testing.T) {
	t.Parallel()
	p := &endingProvider{testProvider: newTestProvider(t)}
	s := startProxy(t, Config{Provider: p, Linger: -1})
	ctx := testContext(t)

	c := connect(t, proxyURL(s, "app", "mode=tx"))
	db := currentDatabase(t, c)
	_ = c.Close(ctx)
	waitFor(t, "the lease released", func() bool { return released(p.testProvider, db) })
	if got := p.recorded(); !slices.Equal(got, []string{"ending", "release clean"}) {
		t.Fatalf("provider saw %q, want Ending, then a clean Release", got)
	}

	// An unclean end (the backend terminated) says nothing of ending.
	c = connect(t, proxyURL(s, "app", "mode=tx"))
	_, _ = c.Exec(ctx, "SELECT pg_terminate_backend(pg_backend_pid())")
	_ = c.Close(ctx)
	waitFor(t, "the lost lease released", func() bool { return len(p.recorded()) == 3 })
	if got := p.recorded(); got[2] != "release unclean" {
		t.Fatalf("provider saw %q, want an unclean Release without Ending", got)
	}
}
