package proxy

import (
	"testing"
	"time"
)

// A lease of a kept backend begins its transaction with the client's first statement,
// sent to the server with it, not when the client connects: now() is later than a
// moment between the connect and the first statement, as on a plain server, where the
// first statement's implicit transaction begins when it arrives.
func TestTxKeptLeaseStartsWithFirstStatement(t *testing.T) {
	t.Parallel()
	p := newTestProvider(t)
	s := startProxy(t, Config{Provider: p, Linger: -1})
	ctx := testContext(t)
	direct := connect(t, p.admin)

	c := connect(t, proxyURL(s, "app", "mode=tx"))
	db := currentDatabase(t, c)
	pid := backendPID(t, c)
	_ = c.Close(ctx)
	waitFor(t, "first lease released", func() bool { return released(p, db) })

	c = connect(t, proxyURL(s, "app", "mode=tx"))
	var between time.Time
	if err := direct.QueryRow(ctx, "SELECT clock_timestamp()").Scan(&between); err != nil {
		t.Fatal(err)
	}
	var later bool
	var backend uint32
	var got string
	if err := c.QueryRow(ctx, "SELECT now() > $1::timestamptz, pg_backend_pid(), current_database()", between).
		Scan(&later, &backend, &got); err != nil {
		t.Fatal(err)
	}
	if got != db || backend != pid {
		t.Fatalf("second lease on %s, backend %d; want the kept backend %d of %s", got, backend, pid, db)
	}
	if !later {
		t.Error("the kept lease's transaction began before the client's first statement")
	}
}

// A connection of a kept backend's lease that leaves without a statement (its
// lease's start was never sent) leaves the clone clean, and the next lease reuses the
// backend; so does a connection of a session key whose next connection resets it.
func TestTxKeptLeaseUnusedStart(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		query []string
	}{
		{"own lease", []string{"mode=tx"}},
		{"session key", []string{"mode=tx", "session=k"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := newTestProvider(t)
			linger := Config{Provider: p, Linger: -1}
			if len(tc.query) > 1 {
				linger.Linger = time.Minute // the key's next connection resets the lease
			}
			s := startProxy(t, linger)
			ctx := testContext(t)
			c := connect(t, proxyURL(s, "app", tc.query...))
			db := currentDatabase(t, c)
			pid := backendPID(t, c)
			if _, err := c.Exec(ctx, "CREATE TEMP TABLE scratch (v int)"); err != nil {
				t.Fatal(err)
			}
			_ = c.Close(ctx)
			if len(tc.query) == 1 {
				waitFor(t, "first lease released", func() bool { return released(p, db) })
			} else {
				waitFor(t, "the first connection's session to end", func() bool { return s.Stats().SessionsActive == 0 })
			}
			for range 2 { // connections that send nothing
				n := len(p.releases())
				c = connect(t, proxyURL(s, "app", tc.query...))
				_ = c.Close(ctx)
				waitFor(t, "the session to end", func() bool {
					return s.Stats().SessionsActive == 0 && (len(tc.query) > 1 || len(p.releases()) > n)
				})
			}
			c = connect(t, proxyURL(s, "app", tc.query...))
			var backend uint32
			var got string
			var temp bool
			if err := c.QueryRow(ctx, "SELECT pg_backend_pid(), current_database(), to_regclass('pg_temp.scratch') IS NOT NULL").
				Scan(&backend, &got, &temp); err != nil {
				t.Fatal(err)
			}
			if got != db || backend != pid || temp {
				t.Errorf("last lease on %s, backend %d, temp table %v; want the kept backend %d of %s, reset", got, backend, temp, pid, db)
			}
			for _, r := range p.releases() {
				if !r.clean {
					t.Errorf("lease of %s released unclean", r.database)
				}
			}
		})
	}
}

// A kept backend that the server ended while it waited for the clone's next lease
// (pg_terminate_backend here; idle_session_timeout alike) is not handed a lease's start
// without a look: the next lease opens a fresh backend, and its client never hears of
// the old one.
func TestTxKeptBackendEndedBetweenLeases(t *testing.T) {
	t.Parallel()
	p := newTestProvider(t)
	s := startProxy(t, Config{Provider: p, Linger: -1})
	ctx := testContext(t)
	direct := connect(t, p.admin)

	c := connect(t, proxyURL(s, "app", "mode=tx"))
	db := currentDatabase(t, c)
	pid := backendPID(t, c)
	_ = c.Close(ctx)
	waitFor(t, "first lease released", func() bool { return released(p, db) })
	if _, err := direct.Exec(ctx, "SELECT pg_terminate_backend($1, 10000)", pid); err != nil {
		t.Fatal(err)
	}

	c = connect(t, proxyURL(s, "app", "mode=tx"))
	var backend uint32
	var got string
	if err := c.QueryRow(ctx, "SELECT pg_backend_pid(), current_database()").Scan(&backend, &got); err != nil {
		t.Fatalf("first statement after the kept backend ended: %v", err)
	}
	if got != db || backend == pid {
		t.Errorf("lease on %s, backend %d; want %s on a fresh backend (not %d)", got, backend, db, pid)
	}
}
