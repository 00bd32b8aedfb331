package integration

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// stressModes are the lease modes of the load: session i runs in stressModes[i%2].
var stressModes = []string{"db", "tx"}

// rawCloneSeconds is how long TestStressLoad times each strategy of the upstream's raw
// clone+drop loop, before the proxy starts.
const rawCloneSeconds = 3

// load is a running client load: sessions in a loop of connect (a lease), check the
// clone, write to it, disconnect, until stopped.
type load struct {
	start time.Time
	stop  chan struct{}
	wg    sync.WaitGroup

	mu      sync.Mutex
	leases  map[string]int             // by mode
	acquire map[string][]time.Duration // successful connects' times, by mode
	errs    map[string]int             // "mode SQLSTATE" (or "mode none: …" for an error without one)
	first   map[string]string          // the first error of each errs key, whole
	bad     []string                   // clones that were not a clean, fully built copy of the template
	end     time.Time                  // when the load was stopped

	// edited, when set, is when the migrations gained users.note: a lease asked for
	// after it must have the column; moved counts the leases asked for before it that
	// got it (their wait followed the new template).
	edited atomic.Pointer[time.Time]
	moved  int
	done   []leaseDone // every lease, in the order they were made
}

type leaseDone struct {
	mode string
	at   time.Time
}

// firstAfter is how long after at the load's first lease in mode was made, or -1.
func (l *load) firstAfter(mode string, at time.Time) time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, d := range l.done {
		if d.mode == mode && d.at.After(at) {
			return d.at.Sub(at)
		}
	}
	return -1
}

// edit records that the migrations changed now.
func (l *load) edit() {
	now := time.Now()
	l.edited.Store(&now)
}

// startLoad starts sessions clients against the proxy, half in each mode.
func startLoad(t *testing.T, p *proxyProc, sessions int) *load {
	return startLoadModes(t, p, sessions, stressModes)
}

// startLoadModes starts sessions clients against the proxy: session i in modes[i%len].
func startLoadModes(t *testing.T, p *proxyProc, sessions int, modes []string) *load {
	l := &load{start: time.Now(), stop: make(chan struct{}), leases: map[string]int{},
		acquire: map[string][]time.Duration{}, errs: map[string]int{}, first: map[string]string{}}
	for i := range sessions {
		mode := modes[i%len(modes)]
		url := p.url(mode, "")
		l.wg.Go(func() { l.session(t.Context(), url, mode, i) })
	}
	return l
}

// halt stops the load and waits for every session to end its current lease.
func (l *load) halt() {
	l.end = time.Now()
	close(l.stop)
	l.wg.Wait()
}

func (l *load) session(ctx context.Context, url, mode string, id int) {
	for n := 0; ; n++ {
		select {
		case <-l.stop:
			return
		default:
		}
		if err := l.lease(ctx, url, mode, fmt.Sprintf("s%d_%d", id, n)); err != nil {
			l.fail(mode, err)
			select { // pace a client that is refused, as a test runner's retry would
			case <-l.stop:
				return
			case <-time.After(50 * time.Millisecond):
			}
		}
	}
}

// lease is one client's lease: the clone must hold exactly the template's one row (a
// half-built clone has no table, a reused tx clone not reset has an earlier lease's
// row), and takes a write.
func (l *load) lease(ctx context.Context, url, mode, name string) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute) // longer than any --acquire-timeout here
	defer cancel()
	t0 := time.Now()
	c, err := pgx.Connect(ctx, url)
	if err != nil {
		return err
	}
	defer c.Close(context.Background())
	took := time.Since(t0)
	err = leaseWork(ctx, c, name, func(n, note int) {
		l.check(mode, t0, n, note)
	})
	if sqlState(err) == "42P01" {
		l.record(func() { l.bad = append(l.bad, mode+" lease without the users table: "+err.Error()) })
	}
	if err != nil {
		return err
	}
	l.record(func() {
		l.leases[mode]++
		l.acquire[mode] = append(l.acquire[mode], took)
		l.done = append(l.done, leaseDone{mode, time.Now()})
	})
	return nil
}

// check records what is wrong with a lease asked for at t0 whose clone held n users,
// and the column the migration edit adds when note is 1.
func (l *load) check(mode string, t0 time.Time, n, note int) {
	if n != 1 {
		l.record(func() { l.bad = append(l.bad, fmt.Sprintf("%s lease found %d users, want the template's 1", mode, n)) })
	}
	if edited := l.edited.Load(); edited != nil {
		switch {
		case t0.After(*edited) && note == 0:
			l.record(func() {
				l.bad = append(l.bad, mode+" lease asked for after the migrations changed got the old template")
			})
		case !t0.After(*edited) && note == 1:
			l.record(func() { l.moved++ })
		}
	}
}

// leaseWork is what each lease of the load does in its clone: it reads the users (n,
// and note: whether the column the migration edit adds is there), passes them to
// check, and adds one named name.
func leaseWork(ctx context.Context, c *pgx.Conn, name string, check func(n, note int)) error {
	var n, note int
	if err := c.QueryRow(ctx, `SELECT count(*), (SELECT count(*) FROM information_schema.columns
		WHERE table_name = 'users' AND column_name = 'note') FROM users`).Scan(&n, &note); err != nil {
		return err
	}
	check(n, note)
	_, err := c.Exec(ctx, "INSERT INTO users (name) VALUES ($1)", name)
	return err
}

func (l *load) record(f func()) {
	l.mu.Lock()
	defer l.mu.Unlock()
	f()
}

// fail counts err by mode and SQLSTATE; an error without one is counted by its text.
func (l *load) fail(mode string, err error) {
	key := mode + " " + sqlState(err)
	var pe *pgconn.PgError
	if !errors.As(err, &pe) {
		msg := err.Error()
		if len(msg) > 80 {
			msg = msg[:80]
		}
		key = mode + " none: " + msg
	}
	l.record(func() {
		if l.errs[key]++; l.errs[key] == 1 {
			l.first[key] = err.Error()
		}
	})
}

// unexpected lists the errors whose SQLSTATE is not in allowed, and the bad clones.
func (l *load) unexpected(allowed ...string) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for key, n := range l.errs {
		_, code, _ := strings.Cut(key, " ")
		if !slices.Contains(allowed, code) {
			out = append(out, fmt.Sprintf("%s ×%d (first: %s)", key, n, l.first[key]))
		}
	}
	sort.Strings(out)
	return append(out, l.bad...)
}

// figures is the load's one-line summary: leases/s and p99 acquisition per mode, and
// errors by mode and SQLSTATE.
func (l *load) figures() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	secs := l.end.Sub(l.start).Seconds()
	inTime := map[string]int{} // leases made before the load was stopped: the rate's
	for _, d := range l.done {
		if !d.at.After(l.end) {
			inTime[d.mode]++
		}
	}
	var b strings.Builder
	for _, mode := range stressModes {
		fmt.Fprintf(&b, "%s %d leases (%.1f/s, p50 %s p99 %s acquire); ", mode, l.leases[mode],
			float64(inTime[mode])/secs, quantile(l.acquire[mode], 0.5), quantile(l.acquire[mode], 0.99))
	}
	errs := make([]string, 0, len(l.errs))
	for _, k := range slices.Sorted(maps.Keys(l.errs)) {
		errs = append(errs, fmt.Sprintf("%s=%d", k, l.errs[k]))
	}
	fmt.Fprintf(&b, "errors {%s}", strings.Join(errs, ", "))
	return b.String()
}

// rate is mode's leases per second made before the load was stopped.
func (l *load) rate(mode string) float64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, d := range l.done {
		if d.mode == mode && !d.at.After(l.end) {
			n++
		}
	}
	return float64(n) / l.end.Sub(l.start).Seconds()
}

// rateBetween is mode's leases per second made between from and to.
func (l *load) rateBetween(mode string, from, to time.Time) float64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, d := range l.done {
		if d.mode == mode && d.at.After(from) && !d.at.After(to) {
			n++
		}
	}
	return float64(n) / to.Sub(from).Seconds()
}

// quantile of ds (rounded to the millisecond), or "-" for none.
func quantile(ds []time.Duration, q float64) string {
	if len(ds) == 0 {
		return "-"
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[min(len(s)-1, int(q*float64(len(s))))].Round(time.Millisecond).String()
}

// envStressRefill, when set, is the proxy's --refill-parallelism in TestStressLoad.
const envStressRefill = "PGTESTPROXY_STRESS_REFILL_PARALLELISM"

// TestStressLoad runs the load for PGTESTPROXY_STRESS_SECONDS with
// PGTESTPROXY_STRESS_SESSIONS sessions, half in each mode, on the real binary, after
// a phase half as long with only its tx-mode sessions, warmed (then the raw clone+drop
// loop runs while they go on), and prints leases/s, acquisition p50/p99 and errors per mode,
// db mode's lease rate as a ratio of the upstream's raw clone+drop rate (rawCloneRate,
// before the proxy starts, and under the tx sessions' load), tx mode's mixed rate as a
// ratio of its rate alone, the clones being made in SHOW POOLS' samples, the proxy's
// RSS and goroutines. Only correctness is asserted: no error but the proxy's 53300 (a client
// past --max-clones or the upstream's connection budget, or no clone within
// --acquire-timeout), no clone that is not a clean full copy of the template, no clone
// left for gc by the proxy's clean stop, and, after it and a gc, no clone leased, being
// made or dropped, nor a database the catalog does not list.
func TestStressLoad(t *testing.T) {
	t.Parallel()
	sessions := stressKnob(envStressSessions, 16)
	secs := stressKnob(envStressSeconds, 3)
	u := newStressUpstream(t, sessions+100)
	rawTpl := rawTemplate(t, u)
	strategy, raw, rawLine := rawCloneRate(t, u, rawTpl, rawCloneSeconds*time.Second)
	rawLease, rawLeaseLine := rawLeaseRate(t, u, rawTpl, strategy, rawCloneSeconds*time.Second)
	mig := migrationsDir(t)
	args := []string{fmt.Sprintf("--max-clones=%d", sessions+16),
		// A session counts against --max-sessions until the proxy has seen its client
		// leave (not while it ends the lease): room for a client that reconnects first.
		fmt.Sprintf("--max-sessions=%d", sessions+16)}
	if n := stressKnob(envStressRefill, 0); n > 0 {
		args = append(args, fmt.Sprintf("--refill-parallelism=%d", n))
	}
	p := startProxyProc(t, u.url("postgres"), mig, args...)
	idleRSS := p.rssMiB()
	// One lease first, so the template's build is in neither phase.
	if err := (&load{leases: map[string]int{}, acquire: map[string][]time.Duration{}}).lease(t.Context(), p.url("tx", ""), "tx", "warm"); err != nil {
		t.Fatal(err)
	}
	aloneSecs := max(1, secs/2)
	// db mode alone: what the proxy's clone pipeline makes of the server when nothing
	// else loads it, against the raw loop on the idle server. Then every clone it left
	// to drop is dropped before the next phase.
	dbAlone := startLoadModes(t, p, sessions/2, []string{"db"})
	waitLeases(t, dbAlone, sessions/2) // past the warm pool
	dbFrom := time.Now()
	<-time.After(time.Duration(aloneSecs) * time.Second) // the phase's length, as the load's below
	dbAloneRate := dbAlone.rateBetween("db", dbFrom, time.Now())
	dbAlone.halt()
	waitFor(t, "the db-mode phase's clones to be dropped", 2*time.Minute, func() bool {
		return clonesInFlight(t, u) == 0
	})
	alone := startLoadModes(t, p, sessions/2, []string{"tx"})
	waitLeases(t, alone, 2*(sessions/2))
	// Warmed: every session's clone made, which at hundreds of sessions takes longer
	// than their first leases (the proxy made 146 clones in the 10 s measured after
	// them at 500 sessions): no clone made for a second.
	made, madeAt := p.clonesMade(), time.Now()
	waitFor(t, "the tx sessions' clones to be made", 2*time.Minute, func() bool {
		if m := p.clonesMade(); m != made {
			made, madeAt = m, time.Now()
		}
		return time.Since(madeAt) >= time.Second
	})
	work0, made0, from := readServerWork(t, u), p.clonesMade(), time.Now()
	<-time.After(time.Duration(aloneSecs) * time.Second) // the phase's length, as the load's below
	txAlone := alone.rateBetween("tx", from, time.Now())
	work1, made1 := readServerWork(t, u), p.clonesMade()
	// The raw loop again, while the tx sessions run on: what the server can clone and
	// drop under the load db mode shares it with below.
	_, rawBusy, rawBusyLine := rawCloneRate(t, u, rawTpl, rawCloneSeconds*time.Second)
	alone.halt()
	xacts0, at0 := catalogXacts(t, u), time.Now()
	l := startLoad(t, p, sessions)
	peak := idleRSS
	var creating []int // SHOW POOLS' creating column, summed over templates, each second
	tick := time.NewTicker(time.Second)
	for deadline := time.After(time.Duration(secs) * time.Second); deadline != nil; {
		select {
		case <-tick.C:
			peak = max(peak, p.rssMiB())
			n := 0
			for _, row := range p.console("SHOW POOLS") {
				k, _ := strconv.Atoi(row["creating"])
				n += k
			}
			creating = append(creating, n)
		case <-deadline:
			deadline = nil
		}
	}
	tick.Stop()
	underLoad := p.goroutines()
	xacts1, at1 := catalogXacts(t, u), time.Now()
	work2 := readServerWork(t, u)
	l.halt()
	t.Logf("load %d sessions × %ds: %s", sessions, secs, l.figures())
	t.Logf("load %d sessions: alone first, %d tx sessions, warmed, then %ds measured (%d clones made in it), then the raw loop below: %s",
		sessions, sessions/2, aloneSecs, made1-made0, alone.figures())
	t.Logf("load %d sessions: db mode alone (%d db sessions, %ds measured): %.1f leases/s = %.2f × the raw clone+drop rate "+
		"= %.2f × the %s, both before the proxy started: %s",
		sessions, sessions/2, aloneSecs, dbAloneRate, dbAloneRate/raw, dbAloneRate/rawLease, rawLeaseLine, dbAlone.figures())
	t.Logf("load %d sessions: db mode %.1f leases/s = %.2f × the %s, while those tx sessions ran",
		sessions, l.rate("db"), l.rate("db")/rawBusy, rawBusyLine)
	dbRate, txRate := l.rate("db"), l.rate("tx")
	t.Logf("load %d sessions: db mode %.1f leases/s = %.2f × the %s; tx mode %.1f leases/s mixed = %.2f × its %.1f/s alone "+
		"(the goals are ≥ 0.8× both; printed, not asserted); clones being made, each second: %v",
		sessions, dbRate, dbRate/raw, rawLine, txRate, txRate/txAlone, txAlone, creating)
	stats, tpls := p.console("SHOW STATS"), p.console("SHOW TEMPLATES")
	strategies := ""
	for _, row := range tpls {
		strategies += row["strategy"]
	}
	t.Logf("load %d sessions: catalog %.0f transactions/s under the mixed load; CREATE DATABASE (%s) p50 %s ms, p99 %s ms",
		sessions, float64(xacts1-xacts0)/at1.Sub(at0).Seconds(), strategies, stats[0]["clone_p50_ms"], stats[0]["clone_p99_ms"])
	t.Logf("load %d sessions: the server's work, tx alone: %s; mixed: %s", sessions, work1.since(work0), work2.since(work1))
	after := p.goroutines()
	drained := waitFor(t, "the leases to end after the load", 2*time.Minute, func() bool {
		return len(p.console("SHOW LEASES")) == 0
	})
	t.Logf("load %d sessions: proxy RSS %.1f MiB idle, %.1f MiB peak, %.1f MiB after; goroutines %s under load, %s as it stopped, "+
		"%s once its leases had ended (%s later)", sessions, idleRSS, peak, p.rssMiB(), underLoad, after, p.goroutines(),
		drained.Round(time.Millisecond))
	if bad := append(alone.unexpected("53300"), l.unexpected("53300")...); len(bad) > 0 {
		t.Errorf("unexpected under load: %s", strings.Join(bad, "; "))
	}
	p.stop()
	// A clean stop finishes the drops it queued: nothing is left for the next gc.
	if atStop := census(t, u); atStop.leaked != 0 {
		t.Errorf("%d clones left for gc by a clean stop: %s", atStop.leaked, atStop.detail)
	}
	gc := gcRun(t, u.url("postgres"), mig)
	c := census(t, u)
	t.Logf("load %d sessions: after stop + gc (%s): %d clones ready (the warm pool), %d leaked", sessions, gc, c.ready, c.leaked)
	if c.leaked != 0 {
		t.Errorf("%d clones leaked after stop + gc: %s", c.leaked, c.detail)
	}
}

// clonesInFlight is how many clones the catalog lists as being made or dropped.
func clonesInFlight(t *testing.T, u *stressUpstream) int {
	t.Helper()
	var n int
	queryUpstreamDB(t, u, "pgtestproxy", `SELECT count(*) FROM catalog_v2.migrated_dbs WHERE state IN ('creating', 'dropping')`, &n)
	return n
}

// catalogXacts is the transactions the proxy's catalog database has committed and
// rolled back (the server's statistics, flushed within a second or so).
func catalogXacts(t *testing.T, u *stressUpstream) int64 {
	t.Helper()
	var n int64
	queryUpstream(t, u, `SELECT coalesce(sum(xact_commit + xact_rollback), 0)::bigint FROM pg_stat_database
		WHERE datname = 'pgtestproxy'`, &n)
	return n
}

// queryUpstream scans the one row sql returns on the upstream's postgres database into
// dest.
func queryUpstream(t *testing.T, u *stressUpstream, sql string, dest ...any) {
	t.Helper()
	queryUpstreamDB(t, u, "postgres", sql, dest...)
}

// queryUpstreamDB scans the one row sql returns on the upstream's database db into dest.
func queryUpstreamDB(t *testing.T, u *stressUpstream, db, sql string, dest ...any) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	c, err := pgx.Connect(ctx, u.url(db))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(context.Background())
	if err := c.QueryRow(ctx, sql).Scan(dest...); err != nil {
		t.Fatal(err)
	}
}

// serverWork is what the upstream did that costs every session: checkpoints (CREATE
// DATABASE … STRATEGY FILE_COPY requests two), WAL, and the full-page images a write
// to a page makes in WAL after each checkpoint (and every page a WAL_LOG clone copies).
// PostgreSQL 15 backends flush their WAL counts up to 10 s late when idle (the proxy's
// admin connections that made the warm-up's clones), so a phase's figures hold some
// of the work before it.
type serverWork struct {
	at                    time.Time
	checkpoints, fpi, wal int64
}

func readServerWork(t *testing.T, u *stressUpstream) serverWork {
	t.Helper()
	w := serverWork{at: time.Now()}
	queryUpstream(t, u, `SELECT (SELECT checkpoints_req + checkpoints_timed FROM pg_stat_bgwriter),
		wal_fpi, wal_bytes::bigint FROM pg_stat_wal`, &w.checkpoints, &w.fpi, &w.wal)
	return w
}

// since is the work done since w0, per second.
func (w serverWork) since(w0 serverWork) string {
	s := w.at.Sub(w0.at).Seconds()
	return fmt.Sprintf("%.1f checkpoints/s, %.0f full-page images/s, %.1f MiB WAL/s",
		float64(w.checkpoints-w0.checkpoints)/s, float64(w.fpi-w0.fpi)/s, float64(w.wal-w0.wal)/s/(1<<20))
}
