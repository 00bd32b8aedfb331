package proxy

import (
	"context"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgtestproxy/pgtestproxy/internal/leasemode"
	"github.com/pgtestproxy/pgtestproxy/internal/testpg"
)

// readyProvider is a testProvider that can lease without waiting (its Acquire never
// waits anyway) and whose leases know whether they are current: bumping gen makes
// every lease made before it stale, as a migration edit does.
type readyProvider struct {
	*testProvider
	gen atomic.Int32
}

func (p *readyProvider) AcquireReady(ctx context.Context, req LeaseRequest) (Lease, error) {
	l, err := p.Acquire(ctx, req)
	if err != nil {
		return nil, err
	}
	return &currentLease{Lease: l, p: p, gen: p.gen.Load()}, nil
}

type currentLease struct {
	Lease
	p   *readyProvider
	gen int32
}

func (l *currentLease) Current(context.Context) bool { return l.gen == l.p.gen.Load() }

// startAhead starts a proxy that connects db-mode leases ahead, on a readyProvider.
func startAhead(t *testing.T, idle time.Duration) (*Server, *readyProvider) {
	t.Helper()
	p := &readyProvider{testProvider: newTestProvider(t)}
	s := startProxy(t, Config{Provider: p, ConnectAhead: true, aheadIdle: idle})
	return s, p
}

func aheadOf(s *Server) *ahead { return s.runners[leasemode.DB].(*dbRunner).ahead }

// sparePIDs returns the backend PIDs and databases of the spares waiting.
func sparePIDs(s *Server) map[uint32]string {
	a := aheadOf(s)
	a.mu.Lock()
	defer a.mu.Unlock()
	pids := map[uint32]string{}
	for _, sl := range a.slots {
		if sl.spare != nil {
			pids[sl.spare.up.Cancel.PID()] = sl.spare.lease.Database()
		}
	}
	return pids
}

// waitSpares waits until n spares wait for a client and returns them.
func waitSpares(t *testing.T, s *Server, n int) map[uint32]string {
	t.Helper()
	waitFor(t, "spares connected ahead", func() bool { return aheadOf(s).ready() == n })
	return sparePIDs(s)
}

func onlySpare(t *testing.T, spares map[uint32]string) (uint32, string) {
	t.Helper()
	if len(spares) != 1 {
		t.Fatalf("spares = %v, want one", spares)
	}
	for pid, db := range spares {
		return pid, db
	}
	return 0, ""
}

// realPID returns the client's backend PID, checking that the driver reports the same.
func realPID(t *testing.T, c *pgx.Conn) uint32 {
	t.Helper()
	pid := backendPID(t, c)
	if got := c.PgConn().PID(); got != pid {
		t.Fatalf("driver reports PID %d, pg_backend_pid() = %d", got, pid)
	}
	return pid
}

// The next db-mode connection gets the lease and backend connected ahead of it, with
// its own startup parameters as a plain server applies them (RESET goes back to them,
// pg_settings says they came from the client), and the one after that gets the next
// spare, made meanwhile.
func TestConnectAheadHandsOverItsBackend(t *testing.T) {
	s, p := startAhead(t, 0)
	url := proxyURL(s, "app", "application_name=ahead_test")
	first := connect(t, url)
	realPID(t, first)
	_ = first.Close(context.Background())

	for i := range 2 {
		pid, db := onlySpare(t, waitSpares(t, s, 1))
		before := p.acquired()
		c := connect(t, url)
		if got := realPID(t, c); got != pid {
			t.Fatalf("connection %d: backend PID %d, want the spare's %d", i+2, got, pid)
		}
		if got := currentDatabase(t, c); got != db {
			t.Fatalf("connection %d: database %s, want the spare's %s", i+2, got, db)
		}
		var name, source string
		if _, err := c.Exec(context.Background(), "RESET application_name"); err != nil {
			t.Fatal(err)
		}
		if err := c.QueryRow(context.Background(),
			"SELECT setting, source FROM pg_settings WHERE name = 'application_name'").Scan(&name, &source); err != nil {
			t.Fatal(err)
		}
		if name != "ahead_test" || source != "client" {
			t.Fatalf("application_name after RESET = %q from %q, want %q from the client's startup", name, source, "ahead_test")
		}
		_ = c.Close(context.Background())
		waitFor(t, "the next spare's lease", func() bool { return p.acquired() > before })
	}
	waitFor(t, "the last spare", func() bool { return s.Stats().AheadReady == 1 })
	if got := s.Stats().AheadTaken; got != 2 {
		t.Fatalf("SHOW STATS ahead_taken = %d, want 2", got)
	}
}

// A spare is for the startup parameters it was made with: a connection with others
// gets a backend of its own with its own, and the spare stays for its kind.
func TestConnectAheadOnlyForTheSameStartup(t *testing.T) {
	s, _ := startAhead(t, 0)
	c := connect(t, proxyURL(s, "app", "application_name=a"))
	_ = c.Close(context.Background())
	pidA, _ := onlySpare(t, waitSpares(t, s, 1))

	other := connect(t, proxyURL(s, "app", "application_name=b"))
	if got := backendPID(t, other); got == pidA {
		t.Fatalf("a connection with application_name=b got the spare made for application_name=a")
	}
	var name string
	if err := other.QueryRow(context.Background(), "SHOW application_name").Scan(&name); err != nil {
		t.Fatal(err)
	}
	if name != "b" {
		t.Fatalf("application_name = %q, want b", name)
	}
	spares := waitSpares(t, s, 2)
	if _, ok := spares[pidA]; !ok {
		t.Fatalf("the spare for application_name=a is gone: %v", spares)
	}
}

// A spare whose lease is no longer current (the migrations changed) is released, not
// handed out.
func TestConnectAheadStaleSpareReleased(t *testing.T) {
	s, p := startAhead(t, 0)
	url := proxyURL(s, "app")
	_ = connect(t, url).Close(context.Background())
	pid, db := onlySpare(t, waitSpares(t, s, 1))
	p.gen.Add(1)

	c := connect(t, url)
	if got := backendPID(t, c); got == pid {
		t.Fatal("the stale spare was handed out")
	}
	if got := currentDatabase(t, c); got == db {
		t.Fatalf("the connection got the stale spare's database %s", db)
	}
	waitFor(t, "the stale spare's release", func() bool {
		return slices.Contains(p.releases(), releaseRecord{database: db, clean: true})
	})
}

// A spare whose backend ended (terminated, an upstream restart) is released as
// broken; the connection that would have taken it connects a backend of its own.
func TestConnectAheadDeadBackendNotHandedOut(t *testing.T) {
	s, p := startAhead(t, 0)
	url := proxyURL(s, "app")
	_ = connect(t, url).Close(context.Background())
	pid, db := onlySpare(t, waitSpares(t, s, 1))
	admin := connect(t, testpg.AdminURL(t))
	if _, err := admin.Exec(context.Background(), "SELECT pg_terminate_backend($1)", int32(pid)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the spare's backend to end", func() bool {
		var n int
		err := admin.QueryRow(context.Background(), "SELECT count(*) FROM pg_stat_activity WHERE pid = $1", int32(pid)).Scan(&n)
		return err == nil && n == 0
	})

	c := connect(t, url)
	if got := backendPID(t, c); got == pid {
		t.Fatal("the dead spare's PID was handed out")
	}
	var one int
	if err := c.QueryRow(context.Background(), "SELECT 1").Scan(&one); err != nil {
		t.Fatalf("query on the connection after a dead spare: %v", err)
	}
	waitFor(t, "the dead spare's release", func() bool {
		return slices.Contains(p.releases(), releaseRecord{database: db, clean: false})
	})
}

// A spare no client takes is released after the idle time, and a connection with a
// session key never takes one.
func TestConnectAheadIdleSpareReleased(t *testing.T) {
	s, p := startAhead(t, 100*time.Millisecond)
	_ = connect(t, proxyURL(s, "app")).Close(context.Background())
	_, db := onlySpare(t, waitSpares(t, s, 1))
	waitFor(t, "the idle spare's release", func() bool {
		return slices.Contains(p.releases(), releaseRecord{database: db, clean: true})
	})
	if n := aheadOf(s).ready(); n != 0 || s.Stats().AheadReady != 0 {
		t.Fatalf("%d spares after the idle time (SHOW STATS ahead_ready %d), want 0", n, s.Stats().AheadReady)
	}

	before := p.acquired()
	keyed := connect(t, proxyURL(s, "app", "session=k"))
	_ = keyed.Close(context.Background())
	if got := p.acquired() - before; got != 1 {
		t.Fatalf("a keyed connection made %d leases, want 1 (its own, none ahead)", got)
	}
	if n := aheadOf(s).ready(); n != 0 {
		t.Fatalf("a keyed connection left %d spares, want 0", n)
	}
}
