package pool

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgtestproxy/pgtestproxy/internal/leasemode"
	"github.com/pgtestproxy/pgtestproxy/internal/pgserver"
)

// TestConnectionBudget: on a server with few connections and a clone cap above them,
// Acquire refuses the lease that would exhaust the upstream with the pool's own 53300
// naming the limit and what to change (never the server's "too many clients"), while
// the pool's own work still has connections: released leases' clones are dropped, none
// is left dropping, and leases are granted again.
func TestConnectionBudget(t *testing.T) {
	t.Parallel()
	srv := privateServer(t, pgserver.Config{MaxConnections: 30})
	f := &fixture{t: t, admin: srv.ConnString("postgres"), catalog: "pgtestproxy", prefix: "pgtp_"}
	cfg := f.config(map[string]Migrator{"": newMigDir(t, simpleSchema)})
	cfg.MaxClones, cfg.AcquireTimeout = 60, 10*time.Second
	p := f.pool(cfg)
	var held []*Lease
	var refused error
	for len(held) < cfg.MaxClones {
		l, err := p.Acquire(t.Context(), "", leasemode.DB)
		if err != nil {
			refused = err
			break
		}
		held = append(held, l)
		// Each lease's client connects, as the proxy does; half connect twice.
		for range 1 + len(held)%2 {
			ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
			c, err := pgconn.ConnectConfig(ctx, l.ConnConfig())
			cancel()
			if err != nil {
				t.Fatalf("lease %d's client could not connect: %v", len(held), err)
			}
			t.Cleanup(func() { c.Close(context.Background()) })
		}
	}
	if len(held) == 0 || refused == nil {
		t.Fatalf("%d leases granted, refusal %v", len(held), refused)
	}
	if sqlStateOf(refused) != "53300" {
		t.Fatalf("refusal %v: want SQLSTATE 53300", refused)
	}
	mustContain(t, refused.Error(), "max_connections 30", "--max-clones", "raise max_connections")
	t.Logf("%d leases granted, then: %v", len(held), refused)
	for _, l := range held {
		l.Release(t.Context(), true)
	}
	catalog := srv.ConnString("pgtestproxy") + "&search_path=" + catalogSchema(CatalogVersion)
	eventually(t, "released clones dropped", func() bool {
		return queryInt(t, catalog, "SELECT count(*) FROM migrated_dbs WHERE state IN ('leased', 'dropping')") == 0
	})
	acquire(t, p, "", leasemode.DB).Release(t.Context(), true)
}
