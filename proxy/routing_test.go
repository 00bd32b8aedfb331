package proxy

import (
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
)

// Each connection without a session key gets a fresh clone of the template, and the
// clone is gone when the connection closes.
func TestFreshDatabasePerConnection(t *testing.T) {
	t.Parallel()
	p := newTestProvider(t)
	s := startProxy(t, Config{Provider: p})
	ctx := testContext(t)

	seen := map[string]bool{}
	for i := range 3 {
		c := connect(t, proxyURL(s, "app"))
		db := currentDatabase(t, c)
		if seen[db] {
			t.Fatalf("connection %d got database %s again", i, db)
		}
		seen[db] = true
		var n int
		if err := c.QueryRow(ctx, "SELECT count(*) FROM items").Scan(&n); err != nil || n != 3 {
			t.Fatalf("connection %d: items has %d rows (%v), want the template's 3", i, n, err)
		}
		// A write here must not show in the next connection's database.
		if _, err := c.Exec(ctx, "DELETE FROM items"); err != nil {
			t.Fatal(err)
		}
		if err := c.Close(ctx); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "lease released", func() bool { return len(p.releases()) == i+1 })
	}
	for _, r := range p.releases() {
		if !r.clean {
			t.Errorf("lease of %s released unclean after an orderly close", r.database)
		}
	}
}

// Concurrent leases are separate databases: what one writes, another never sees.
func TestConcurrentLeasesAreIsolated(t *testing.T) {
	t.Parallel()
	p := newTestProvider(t)
	s := startProxy(t, Config{Provider: p})
	ctx := testContext(t)
	const n = 6
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Go(func() {
			c := connect(t, proxyURL(s, "app"))
			if _, err := c.Exec(ctx, "INSERT INTO items VALUES ($1, 'mine')", 100+i); err != nil {
				errs <- err
				return
			}
			var ids []int32
			rows, _ := c.Query(ctx, "SELECT id FROM items WHERE id >= 100")
			for rows.Next() {
				var id int32
				_ = rows.Scan(&id)
				ids = append(ids, id)
			}
			if err := rows.Err(); err != nil {
				errs <- err
				return
			}
			if len(ids) != 1 || ids[0] != int32(100+i) {
				t.Errorf("connection %d sees rows %v, want only its own %d", i, ids, 100+i)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// Connections with the same session key share one database (a client pool sees its
// own writes across connections); other keys and modes get their own; the lease ends
// once, after the pool closed and the linger passed.
func TestSessionKeySharesDatabase(t *testing.T) {
	t.Parallel()
	p := newTestProvider(t)
	s := startProxy(t, Config{Provider: p, Linger: 100 * time.Millisecond})
	ctx := testContext(t)

	pool, err := pgxpool.New(ctx, proxyURL(s, "app", "session=k1", "pool_max_conns=4"))
	if err != nil {
		t.Fatal(err)
	}
	// Hold four connections at once so the pool really opens four.
	var conns []*pgxpool.Conn
	dbs := map[string]bool{}
	for range 4 {
		c, err := pool.Acquire(ctx)
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
		var db string
		if err := c.QueryRow(ctx, "SELECT current_database()").Scan(&db); err != nil {
			t.Fatal(err)
		}
		dbs[db] = true
	}
	if len(dbs) != 1 {
		t.Fatalf("pool connections with one session key saw databases %v, want one", dbs)
	}
	if _, err := conns[0].Exec(ctx, "INSERT INTO items VALUES (42, 'shared')"); err != nil {
		t.Fatal(err)
	}
	var name string
	if err := conns[3].QueryRow(ctx, "SELECT name FROM items WHERE id = 42").Scan(&name); err != nil {
		t.Fatalf("another pool connection does not see the write: %v", err)
	}
	for _, c := range conns {
		c.Release()
	}

	other := connect(t, proxyURL(s, "app", "session=k2"))
	txMode := connect(t, proxyURL(s, "app", "session=k1", "mode=tx"))
	if db := currentDatabase(t, other); dbs[db] {
		t.Errorf("session key k2 got k1's database %s", db)
	}
	if db := currentDatabase(t, txMode); dbs[db] {
		t.Errorf("mode=tx with key k1 got the db-mode lease's database %s", db)
	}
	if got := p.acquired(); got != 3 {
		t.Errorf("provider saw %d acquisitions, want 3 (k1 db, k2 db, k1 tx)", got)
	}
	pool.Close()
	waitFor(t, "k1's lease released after linger", func() bool { return len(p.releases()) == 1 })
}

// A client pool that reconnects within the linger keeps its database; after the
// linger the lease ends.
func TestSessionLeaseLingers(t *testing.T) {
	t.Parallel()
	p := newTestProvider(t)
	s := startProxy(t, Config{Provider: p, Linger: 3 * time.Second})
	ctx := testContext(t)

	c := connect(t, proxyURL(s, "app", "session=lingering"))
	first := currentDatabase(t, c)
	_ = c.Close(ctx)
	c = connect(t, proxyURL(s, "app", "session=lingering"))
	if db := currentDatabase(t, c); db != first {
		t.Fatalf("reconnect within linger got %s, want %s", db, first)
	}
	_ = c.Close(ctx)
	waitFor(t, "lease released after linger", func() bool { return len(p.releases()) == 1 })
	if got := p.releases()[0].database; got != first {
		t.Fatalf("released %s, want %s", got, first)
	}
	c = connect(t, proxyURL(s, "app", "session=lingering"))
	if db := currentDatabase(t, c); db == first {
		t.Fatalf("after the linger the key still maps to %s", db)
	}
}
