// Command bench measures pgtestproxy against what a user would pick instead, in one
// run on one server: per-test acquisition, a simulated test suite, steady-state
// pgbench traffic, template cost and the proxy's footprint. It prints one table, each
// row with its ratio to its group's baseline measured in the same run, and writes the
// rows as JSON with --json. See BENCH.md.
package main

import (
	"context"
	"database/sql"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime"
	"strings"
	"syscall"
	"time"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// config is the size of a run.
type config struct {
	quick       bool
	jsonPath    string
	mdPath      string
	only        string
	iterations  int           // acquisitions per approach and pace
	pace        time.Duration // a test's own work between two acquisitions
	suiteN      int           // tests in a suite simulation
	workers     []int         // parallel workers of the suite simulation
	coldWorkers int           // workers of the cold-start suites
	pgbenchT    int           // seconds per pgbench run
	pgbenchRuns int           // pgbench runs per row (median)
	repeats     int           // repeats of template builds and clones (median)
	sessions    []int         // idle sessions of the footprint rows
	poolSize    int           // the proxy's --pool-size
}

func parseConfig(args []string, stderr io.Writer) (*config, error) {
	c := &config{}
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.BoolVar(&c.quick, "quick", false, "a short run: 100 iterations, suites of 100 tests on 4 workers, 3 s pgbench runs, up to 100 sessions")
	fs.StringVar(&c.jsonPath, "json", "", "write the rows as JSON to `FILE`")
	fs.StringVar(&c.mdPath, "markdown", "", "write the table as Markdown to `FILE`")
	fs.StringVar(&c.only, "only", "", "comma-separated scenarios to run (1–6; default all)")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	c.poolSize = 4
	if c.quick {
		c.iterations, c.pace, c.suiteN, c.workers, c.coldWorkers = 100, 50*time.Millisecond, 100, []int{4}, 4
		c.pgbenchT, c.pgbenchRuns, c.repeats, c.sessions = 3, 1, 1, []int{0, 100}
	} else {
		c.iterations, c.pace, c.suiteN, c.workers, c.coldWorkers = 500, 50*time.Millisecond, 1000, []int{1, 2, 4}, 4
		c.pgbenchT, c.pgbenchRuns, c.repeats, c.sessions = 10, 3, 3, []int{0, 100, 500}
	}
	return c, nil
}

// bench is one run: its configuration, what it started and what it measured.
type bench struct {
	cfg   *config
	env   *env
	admin *sql.DB // superuser pool on the server's postgres database
	rep   *report
	log   io.Writer
	// failed lists the scenarios that failed; their rows so far are kept.
	failed []string
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	cfg, err := parseConfig(args, stderr)
	if err != nil {
		return 2
	}
	b := &bench{cfg: cfg, log: stderr, rep: &report{Started: time.Now().UTC(), Quick: cfg.quick,
		Command: "bench " + strings.Join(args, " "), Machine: machine(), progress: stderr}}
	if err := b.run(ctx); err != nil {
		fmt.Fprintln(stderr, "bench:", err)
		return 1
	}
	b.rep.ratios()
	b.rep.Goals = b.rep.judge()
	fmt.Fprintln(stdout)
	b.rep.print(stdout)
	printGoals(stdout, b.rep.Goals)
	if cfg.jsonPath != "" {
		if err := b.rep.writeJSON(cfg.jsonPath); err != nil {
			fmt.Fprintln(stderr, "bench:", err)
			return 1
		}
	}
	if cfg.mdPath != "" {
		f, err := os.Create(cfg.mdPath)
		if err != nil {
			fmt.Fprintln(stderr, "bench:", err)
			return 1
		}
		b.rep.markdown(f)
		markdownGoals(f, b.rep.Goals)
		_ = f.Close()
	}
	if len(b.failed) > 0 {
		fmt.Fprintln(stderr, "bench:", strings.Join(b.failed, "; "))
		return 1
	}
	return 0
}

func machine() string {
	return fmt.Sprintf("%s/%s, %d CPUs, %s", runtime.GOOS, runtime.GOARCH, runtime.NumCPU(), runtime.Version())
}

func (b *bench) want(scenario string) bool {
	return b.cfg.only == "" || strings.Contains(","+b.cfg.only+",", ","+scenario+",")
}

// run starts everything, runs the scenarios asked for and stops everything.
func (b *bench) run(ctx context.Context) error {
	e, err := startEnv(ctx, b.log)
	if err != nil {
		return err
	}
	b.env = e
	defer e.close()
	b.admin, err = sql.Open("pgx", e.url("", "postgres"))
	if err != nil {
		return err
	}
	defer b.admin.Close()
	fmt.Fprintln(b.log, "migrating the direct databases with golang-migrate")
	for _, set := range []string{setSmall, setLarge, setPgbench} {
		if err := e.migrateInto(ctx, directDB(set), e.sets[set]); err != nil {
			return err
		}
		if set != setPgbench {
			if err := e.migrateInto(ctx, cloneTemplateDB(set), e.sets[set]); err != nil {
				return err
			}
		}
	}
	e.proxy, err = e.startProxy(ctx, e.sets, "--pool-size", fmt.Sprint(b.cfg.poolSize))
	if err != nil {
		return err
	}
	fmt.Fprintln(b.log, "proxy listening on", e.proxy.addr)
	if e.bouncer, err = e.startPgbouncer(ctx); err != nil {
		return err
	}
	if e.bouncer == "" {
		b.rep.skip("pgbouncer not installed: rows skipped")
	}
	steps := []struct {
		n   string
		run func(context.Context) error
	}{{"1", b.acquisition}, {"2", b.suites}, {"3", b.steady}, {"4", b.templates}, {"5", b.footprint}, {"6", b.reuseSuites}}
	for _, s := range steps {
		if !b.want(s.n) {
			continue
		}
		fmt.Fprintf(b.log, "scenario %s\n", s.n)
		t0 := time.Now()
		if err := s.run(ctx); err != nil {
			if ctx.Err() != nil {
				return fmt.Errorf("scenario %s: %w", s.n, err)
			}
			// The rows measured so far still count; the run fails at the end.
			b.failed = append(b.failed, fmt.Sprintf("scenario %s failed: %v", s.n, err))
			b.rep.skip(b.failed[len(b.failed)-1])
			continue
		}
		fmt.Fprintf(b.log, "scenario %s took %v\n", s.n, time.Since(t0).Round(time.Second))
	}
	return nil
}

// directDB is the database migrated once with golang-migrate that direct connections,
// go-txdb and pgbench's direct and pgbouncer rows use.
func directDB(set string) string { return "bench_" + set }

// cloneTemplateDB is the migrated source of the synchronous-clone approach (a template
// must have no connections while it is cloned, so it is not directDB).
func cloneTemplateDB(set string) string { return "bench_tpl_" + set }

// Row names, shared by the scenarios.
const (
	nameDirect     = "direct connection"
	nameProxyDB    = "pgtestproxy db mode"
	nameProxyTx    = "pgtestproxy tx mode"
	namePgtestdb   = "pgtestdb (golang-migrate)"
	nameTxdbFresh  = "go-txdb, new sql.DB per test"
	nameTxdbWarm   = "go-txdb, warm"
	nameSyncClone  = "CREATE DATABASE … TEMPLATE + DROP per test"
	namePgbouncer  = "pgbouncer session mode"
	nameMigrate    = "golang-migrate alone"
	nameProxyBuild = "pgtestproxy template build"
)

// named is an approach with its row name.
type named struct {
	name     string
	open     opener
	baseline bool
}

// approaches returns every way a test can get a database of set, warm (templates
// built, connections up). Outside a suite the direct connection comes first, as the
// baseline; in a suite (tests would see each other's rows there) pgtestdb is.
func (b *bench) approaches(ctx context.Context, set string, suite bool) ([]named, func(), error) {
	e := b.env
	warm, err := newTxdbWarm(ctx, e.url("", directDB(set)))
	if err != nil {
		return nil, nil, err
	}
	var out []named
	if !suite {
		out = append(out, named{nameDirect, urlOpener(e.url("", directDB(set))), true})
		if e.bouncer != "" { // the hand-out the tx-mode goal is measured against
			out = append(out, named{namePgbouncer, urlOpener(e.url(e.bouncer, directDB(set))), false})
		}
	}
	out = append(out,
		named{nameProxyDB, urlOpener(e.url(e.proxy.addr, set)), false},
		named{nameProxyTx, urlOpener(e.url(e.proxy.addr, set, "mode", "tx")), false},
		named{namePgtestdb, pgtestdbOpener(e, e.sets[set]), suite},
		named{nameTxdbFresh, txdbFreshOpener(e.url("", directDB(set))), false},
		named{nameTxdbWarm, warm.opener(), false},
		named{nameSyncClone, cloneOpener(e, b.admin, cloneTemplateDB(set)), false},
	)
	// One untimed use of each, so templates are built and pools warm before timing.
	for _, a := range out {
		if err := oneTest(ctx, a.open, selectOne); err != nil {
			warm.close()
			return nil, nil, fmt.Errorf("warm-up %s: %w", a.name, err)
		}
	}
	return out, warm.close, nil
}
