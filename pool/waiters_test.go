package pool

import (
	"testing"
	"time"

	"github.com/pgtestproxy/pgtestproxy/internal/leasemode"
)

// TestWaitersMoveToNewTemplate: a client waits for a clone (the cap is reached) when
// the migrations change, and another client's Acquire builds the new template (or the
// waiter alone notices the change). The waiter moves to the new template and gets a
// clone of it once leases are released, rather than waiting on the old one until
// AcquireTimeout.
func TestWaitersMoveToNewTemplate(t *testing.T) {
	t.Parallel()
	for _, newcomer := range []bool{true, false} {
		t.Run(map[bool]string{true: "newcomer builds it", false: "waiter alone"}[newcomer], func(t *testing.T) {
			t.Parallel()
			testWaiterMoves(t, newcomer)
		})
	}
}

func testWaiterMoves(t *testing.T, withNewcomer bool) {
	f := newFixture(t)
	d := newMigDir(t, map[string]string{"001_t.up.sql": "CREATE TABLE t (a int);"})
	cfg := f.config(map[string]Migrator{"": d})
	cfg.MaxClones, cfg.PoolSize, cfg.AcquireTimeout = 2, 1, 20*time.Second
	p := f.pool(cfg)
	held := []*Lease{acquire(t, p, "", leasemode.DB), acquire(t, p, "", leasemode.DB)}
	old := p.templates[""].cur.Load()

	type result struct {
		l   *Lease
		err error
	}
	acquireAsync := func() chan result {
		ch := make(chan result, 1)
		go func() {
			l, err := p.Acquire(t.Context(), "", leasemode.DB)
			ch <- result{l, err}
		}()
		return ch
	}
	waiter := acquireAsync()
	eventually(t, "the first client to wait for a clone", func() bool { return old.waiters.Load() == 1 })
	d.write("002_b.up.sql", "ALTER TABLE t ADD COLUMN b int;")
	clients := map[string]chan result{"waiter": waiter}
	if withNewcomer {
		clients["newcomer"] = acquireAsync()
	}
	eventually(t, "the new template to become current", func() bool { return p.templates[""].cur.Load() != old })
	for _, l := range held {
		l.Release(t.Context(), true)
	}
	for name, ch := range clients {
		r := <-ch
		if r.err != nil {
			t.Fatalf("%s: %v", name, r.err)
		}
		if got := columns(t, r.l, "t"); got != "a,b" {
			t.Fatalf("%s got a clone with t(%s), want the new template's t(a,b)", name, got)
		}
		r.l.Release(t.Context(), true)
	}
}
