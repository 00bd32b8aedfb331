package pool

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/pgtestproxy/pgtestproxy/internal/leasemode"
	"github.com/pgtestproxy/pgtestproxy/internal/testpg"
)

// TestVanishedClientsBackendStops: a backend opened with a lease's ConnConfig (what
// the proxy dials) and running a long query stops soon after its client's socket is
// closed abruptly (a killed proxy), instead of running the query to its end.
func TestVanishedClientsBackendStops(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	p := f.pool(f.config(map[string]Migrator{"": newMigDir(t, simpleSchema)}))
	l := acquire(t, p, "", leasemode.DB)
	defer l.Release(t.Context(), true)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	c, err := pgconn.ConnectConfig(ctx, l.ConnConfig())
	if err != nil {
		t.Fatal(err)
	}
	pid := int(c.PID())
	admin := testpg.AdminURL(t)
	t.Cleanup(func() { execAdmin(t, admin, "SELECT pg_terminate_backend("+itoa(pid)+")") })
	c.Frontend().Send(&pgproto3.Query{String: "SELECT pg_sleep(300)"})
	if err := c.Frontend().Flush(); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the query to run", func() bool {
		return queryInt(t, admin, "SELECT count(*) FROM pg_stat_activity WHERE pid = $1 AND state = 'active' AND query LIKE '%pg_sleep%'", pid) == 1
	})
	conn := c.Conn()
	if tc, ok := conn.(*net.TCPConn); ok {
		_ = tc.SetLinger(0) // a reset, as the kernel sends for a killed process's unread socket
	}
	conn.Close()
	eventually(t, "the backend of the vanished client to stop", func() bool {
		return queryInt(t, admin, "SELECT count(*) FROM pg_stat_activity WHERE pid = $1", pid) == 0
	})
}
