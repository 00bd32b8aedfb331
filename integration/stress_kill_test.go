package integration

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// reclaimBound is the correctness deadline for a killed proxy's clones to be
// reclaimed: its owner is deemed dead 30s after its last heartbeat (ReclaimGrace),
// then the next gc drops them. Generous, since the machine is shared.
const reclaimBound = 3 * time.Minute

// TestStressKill9 kills the proxy (SIGKILL) in the middle of the load while one of
// its db-mode clients runs a long query. The query's backend ends soon after
// (client_connection_check_interval, keepalives; the time is printed); a second proxy
// on the same upstream serves at once from the same template (it builds none); `gc`
// reclaims every clone the dead proxy held once its grace has passed (printed); after
// the second proxy stops and a gc, no clone is leaked.
func TestStressKill9(t *testing.T) {
	t.Parallel()
	sessions := stressKnob(envStressSessions, 16)
	u := newStressUpstream(t, sessions+100)
	mig := migrationsDir(t)
	a := startProxyProc(t, u.url("postgres"), mig, stressCapacity(sessions)...)
	pid := longQuery(t, a.url("db", "")) // before the load, whose db-mode clients queue for clones
	l := startLoad(t, a, sessions)
	waitLeases(t, l, 2*sessions)
	waitFor(t, "the long query to run", time.Minute, func() bool {
		return countRows(t, u, "postgres", "SELECT count(*) FROM pg_stat_activity WHERE pid = $1 AND state = 'active' AND query LIKE 'SELECT pg_sleep%'", pid) == 1
	})

	a.kill()
	killed := time.Now()
	l.halt() // its clients see the socket close: whatever they got is not the proxy's answer
	held := heldClones(t, u)
	waitFor(t, "the killed proxy's backend to end", time.Minute, func() bool {
		return countRows(t, u, "postgres", "SELECT count(*) FROM pg_stat_activity WHERE pid = $1", pid) == 0
	})
	backendGone := time.Since(killed)
	waitFor(t, "every backend on the killed proxy's clones to end", time.Minute, func() bool {
		return countRows(t, u, "postgres", "SELECT count(*) FROM pg_stat_activity WHERE datname = ANY($1)", held) == 0
	})
	allGone := time.Since(killed)

	b := startProxyProc(t, u.url("postgres"), mig, stressCapacity(sessions)...)
	l2 := startLoad(t, b, sessions)
	var gcs int
	waitFor(t, "gc to reclaim the killed proxy's clones", reclaimBound, func() bool {
		gcRun(t, u.url("postgres"), mig)
		gcs++
		return countRows(t, u, "postgres", "SELECT count(*) FROM pg_database WHERE datname = ANY($1)", held) == 0
	})
	reclaimed := time.Since(killed)
	waitLeases(t, l2, 2*sessions) // the second proxy served meanwhile
	l2.halt()
	built := b.console("SHOW STATS")[0]["templates_built"]
	t.Logf("kill -9 under %d sessions: the dead proxy's pg_sleep backend ended %s after the kill, all its backends %s; %d clones it held, "+
		"reclaimed %s after the kill (%d gc runs); second proxy built %s templates; its load: %s",
		sessions, backendGone.Round(time.Millisecond), allGone.Round(time.Millisecond), len(held), reclaimed.Round(time.Millisecond), gcs, built, l2.figures())
	if built != "0" {
		t.Errorf("the second proxy built %s templates, want the dead one's reused", built)
	}
	if bad := l2.unexpected("53300"); len(bad) > 0 {
		t.Errorf("the second proxy's load: %s", strings.Join(bad, "; "))
	}
	if bad := l.bad; len(bad) > 0 {
		t.Errorf("the killed proxy's load: %s", strings.Join(bad, "; "))
	}
	b.stop()
	gc := gcRun(t, u.url("postgres"), mig)
	if c := census(t, u); c.leaked != 0 {
		t.Errorf("%d clones leaked after stop + gc (%s): %s", c.leaked, gc, c.detail)
	}
}

// longQuery starts SELECT pg_sleep(600) on a new connection to url and returns its
// backend's PID (the one the proxy reports is the real one) once the server runs it.
func longQuery(t *testing.T, url string) uint32 {
	t.Helper()
	c, err := pgx.Connect(t.Context(), url)
	if err != nil {
		t.Fatal(err)
	}
	pid := c.PgConn().PID()
	go func() { _, _ = c.Exec(context.Background(), "SELECT pg_sleep(600)") }() // ends with the proxy
	return pid
}

// heldClones names the clones the catalog lists as leased, being made or dropped.
func heldClones(t *testing.T, u *stressUpstream) []string {
	t.Helper()
	c, err := pgx.Connect(t.Context(), u.url("pgtestproxy"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(context.Background())
	rows, err := c.Query(t.Context(), "SELECT datname FROM catalog_v2.migrated_dbs WHERE state <> 'ready'")
	if err != nil {
		t.Fatal(err)
	}
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	if len(names) == 0 {
		t.Fatal("the killed proxy held no clones: the scenario tested nothing")
	}
	return names
}

// countRows runs a count query on the upstream's database db.
func countRows(t *testing.T, u *stressUpstream, db, sql string, args ...any) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	c, err := pgx.Connect(ctx, u.url(db))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(context.Background())
	var n int
	if err := c.QueryRow(ctx, sql, args...).Scan(&n); err != nil {
		t.Fatal(fmt.Errorf("%s: %w", sql, err))
	}
	return n
}

// waitFor polls cond until it holds or bound passes (then the test fails), and returns
// how long it took.
func waitFor(t *testing.T, what string, bound time.Duration, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > bound {
			t.Fatalf("%s: not within %s", what, bound)
		}
		time.Sleep(100 * time.Millisecond)
	}
	return time.Since(start)
}
