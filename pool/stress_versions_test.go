package pool

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgerrcode"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgtestproxy/pgtestproxy/internal/leasemode"
)

// TestStressCatalogVersionsUnderLoad: while a pool of this catalog version serves a
// load of short leases in both modes (PGTESTPROXY_STRESS_SESSIONS clients, default
// 8, for PGTESTPROXY_STRESS_SECONDS, default 3), pools of the next catalog version
// (faked as the version tests do) start on the same upstream and catalog database,
// lease, GC and close again and again. Not one of the first pool's leases fails (its
// clones are never dropped or terminated under it; a 53300 for no clone within the
// wait is capacity on a shared machine, counted apart), a lease of each version held
// throughout still answers, and neither version's GC reclaims anything.
func TestStressCatalogVersionsUnderLoad(t *testing.T) {
	t.Parallel()
	sessions, secs := 8, 3
	if n, err := strconv.Atoi(os.Getenv("PGTESTPROXY_STRESS_SESSIONS")); err == nil && n > 0 {
		sessions = min(n, 64) // the upstream is the shared test server
	}
	if n, err := strconv.Atoi(os.Getenv("PGTESTPROXY_STRESS_SECONDS")); err == nil && n > 0 {
		secs = n
	}
	f := newFixture(t)
	d := newMigDir(t, simpleSchema)
	config := func(version int) Config {
		cfg := f.config(map[string]Migrator{"": d})
		cfg.catalogVersion = version
		cfg.MaxClones = sessions + 8
		cfg.AcquireTimeout = 2 * time.Minute // the clone rate is not what is tested here
		return cfg
	}
	cur := f.pool(config(CatalogVersion))
	heldCur := acquire(t, cur, "", leasemode.DB)
	defer heldCur.Release(t.Context(), true)
	next := f.pool(config(CatalogVersion + 1))
	heldNext := acquire(t, next, "", leasemode.Tx)
	defer heldNext.Release(t.Context(), true)

	stop := make(chan struct{})
	var wg sync.WaitGroup
	var mu sync.Mutex
	var leases, refused int
	var failures []string
	for i := range sessions {
		mode := []leasemode.Mode{leasemode.DB, leasemode.Tx}[i%2]
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				err := shortLease(t.Context(), cur, mode)
				mu.Lock()
				switch {
				case sqlStateOf(err) == pgerrcode.TooManyConnections: // no clone in time: capacity, not a clash
					refused++
				case err != nil:
					failures = append(failures, err.Error())
				default:
					leases++
				}
				mu.Unlock()
			}
		})
	}
	rounds := 0
	for deadline := time.Now().Add(time.Duration(secs) * time.Second); time.Now().Before(deadline) || rounds == 0; rounds++ {
		other := f.pool(config(CatalogVersion + 1))
		for _, mode := range []leasemode.Mode{leasemode.DB, leasemode.Tx} {
			if err := shortLease(t.Context(), other, mode); err != nil {
				t.Errorf("the other version's lease: %v", err)
			}
		}
		for _, p := range []*Pool{other, next} {
			r, err := p.GC(t.Context())
			if err != nil || len(r.Reclaimed) != 0 {
				t.Errorf("GC of the other version: reclaimed %v, %v", r.Reclaimed, err)
			}
		}
		other.Close()
	}
	close(stop)
	wg.Wait()
	r, err := cur.GC(t.Context())
	if err != nil || len(r.Reclaimed) != 0 {
		t.Errorf("GC of this version: reclaimed %v, %v", r.Reclaimed, err)
	}
	t.Logf("catalog versions under load: %d sessions, %d leases of version %d while %d pools of version %d started, leased, "+
		"ran GC and closed; %d refused with 53300 (no clone within the wait), %d failed", sessions, leases, CatalogVersion,
		rounds, CatalogVersion+1, refused, len(failures))
	for i, f := range failures {
		if i == 5 {
			break
		}
		t.Errorf("a lease of version %d under the other version's churn: %s", CatalogVersion, f)
	}
	for _, l := range []*Lease{heldCur, heldNext} {
		if got := query(t, connect(t, l), "SELECT count(*) FROM users"); got != "1" {
			t.Fatalf("lease %s held throughout: %q users", l.Database(), got)
		}
	}
}

// shortLease leases a clone in mode, checks it holds the template's one row, writes to
// it and releases it.
func shortLease(ctx context.Context, p *Pool, mode leasemode.Mode) error {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	l, err := p.Acquire(ctx, "", mode)
	if err != nil {
		return fmt.Errorf("acquire %s: %w", mode, err)
	}
	defer l.Release(ctx, true)
	c, err := pgconn.ConnectConfig(ctx, l.ConnConfig())
	if err != nil {
		return fmt.Errorf("connect to %s clone %s: %w", mode, l.Database(), err)
	}
	defer c.Close(context.Background())
	res := c.ExecParams(ctx, "SELECT count(*) FROM users", nil, nil, nil, nil).Read()
	if res.Err != nil || len(res.Rows) != 1 || string(res.Rows[0][0]) != "1" {
		return fmt.Errorf("%s clone %s: rows %q, %v", mode, l.Database(), res.Rows, res.Err)
	}
	if mode == leasemode.Tx { // a tx lease's clone goes back to the pool: leave it as found
		return nil
	}
	return c.Exec(ctx, "INSERT INTO users (name) VALUES ('load')").Close()
}
