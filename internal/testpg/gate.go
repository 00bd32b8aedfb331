package testpg

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// Gate returns a SQL statement that, run in any database of the shared server, waits
// until open is called (or t ends): a migration that blocks a build at a point the test
// chooses. It waits on a role's existence, as roles are visible from every database
// (advisory locks are not: they belong to one database).
func Gate(t testing.TB) (wait string, open func()) {
	t.Helper()
	role := UniqueName(t, "gate_")
	wait = fmt.Sprintf("DO $gate$ BEGIN WHILE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '%s') LOOP "+
		"PERFORM pg_sleep(0.01); END LOOP; END $gate$;", role)
	opened := false
	open = func() {
		t.Helper()
		if !opened {
			opened = true
			Exec(t, AdminURL(t), "CREATE ROLE "+pgx.Identifier{role}.Sanitize())
		}
	}
	t.Cleanup(func() {
		open()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := exec(ctx, AdminURL(t), "DROP ROLE IF EXISTS "+pgx.Identifier{role}.Sanitize()); err != nil {
			t.Errorf("drop gate role %s: %v", role, err)
		}
	})
	return wait, open
}

// WaitRunning waits until a backend of the shared server is running a query that
// contains sql (a Gate's statement, say).
func WaitRunning(t testing.TB, sql string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c, err := pgx.Connect(ctx, AdminURL(t))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(context.Background())
	for {
		var n int
		err := c.QueryRow(ctx, "SELECT count(*) FROM pg_stat_activity WHERE strpos(query, $1) > 0 AND pid <> pg_backend_pid()", sql).Scan(&n)
		if err != nil {
			t.Fatalf("wait for a backend running %q: %v", sql, err)
		}
		if n > 0 {
			return
		}
		time.Sleep(10 * time.Millisecond) // polling the server's view; no event to wait on
	}
}
