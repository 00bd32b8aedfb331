package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strings"
	"syscall"
	"time"
)

// pgxPackages are the packages of pgx's suite that run.
var pgxPackages = []string{
	"github.com/jackc/pgx/v5",
	"github.com/jackc/pgx/v5/pgconn",
	"github.com/jackc/pgx/v5/pgtype",
	"github.com/jackc/pgx/v5/stdlib",
	"github.com/jackc/pgx/v5/pgxpool",
}

// runNames are the runs in table order; direct is the baseline and always runs.
var runNames = []string{"direct", "db-key", "tx", "tx-key"}

// options are the command line.
type options struct {
	root       string        // the pgtestproxy checkout (holds cmd/pgtestproxy)
	work       string        // scratch directory: data dir, binary, logs
	runs       []string      // the proxy runs to do, besides direct
	run        string        // go test -run
	skip       string        // go test -skip
	pkgs       []string      // packages of the suite
	timeout    time.Duration // go test -timeout, per run
	procs      int           // go test -p
	parallel   int           // go test -parallel
	jsonFile   string        // where the raw results go
	listMax    int           // tests listed per cause
	proxyFlags string        // extra flags for pgtestproxy serve
	reportFile string        // print the report of an earlier --json file instead of measuring
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	opt, err := parseFlags(args, stderr)
	if err != nil {
		return 2
	}
	if opt.reportFile != "" {
		results, err := readResults(opt.reportFile)
		if err != nil {
			fmt.Fprintf(stderr, "fidelity: %v\n", err)
			return 1
		}
		buildReport(results).print(stdout, "results of "+opt.reportFile, opt.listMax)
		return 0
	}
	var saved func([]*runResult)
	if opt.jsonFile != "" {
		// Written after every run, so a long measurement that is stopped keeps what it has.
		saved = func(results []*runResult) {
			if err := buildReport(results).writeJSON(opt.jsonFile, results); err != nil {
				fmt.Fprintf(stderr, "fidelity: %v\n", err)
			}
		}
	}
	results, err := measure(ctx, opt, stderr, saved)
	if err != nil {
		fmt.Fprintf(stderr, "fidelity: %v\n", err)
		return 1
	}
	buildReport(results).print(stdout, opt.header(), opt.listMax)
	if opt.jsonFile != "" {
		fmt.Fprintf(stdout, "\nraw results: %s\n", opt.jsonFile)
	}
	return 0
}

func parseFlags(args []string, stderr io.Writer) (options, error) {
	fs := flag.NewFlagSet("fidelity", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var opt options
	var runs, pkgs string
	fs.StringVar(&opt.root, "root", "..", "the pgtestproxy checkout to build the proxy from")
	fs.StringVar(&opt.work, "work", "/dev/shm/pgtp-fidelity", "scratch directory: server data, proxy binary, logs")
	fs.StringVar(&runs, "runs", "db-key,tx,tx-key", "proxy runs to do besides direct: db-key, tx, tx-key")
	fs.StringVar(&opt.run, "run", "", "go test -run: only the tests matching")
	fs.StringVar(&opt.skip, "skip", "", "go test -skip: not the tests matching")
	fs.StringVar(&pkgs, "pkgs", strings.Join(pgxPackages, ","), "packages of pgx's suite to run")
	fs.DurationVar(&opt.timeout, "timeout", 5*time.Minute, "go test -timeout for each run (per package); a package that times out runs again without the tests that hung")
	fs.IntVar(&opt.procs, "p", 2, "go test -p: packages run at once")
	fs.IntVar(&opt.parallel, "parallel", 4, "go test -parallel: parallel tests at once per package")
	fs.StringVar(&opt.jsonFile, "json", "", "write the raw results to this file")
	fs.IntVar(&opt.listMax, "list", 25, "tests listed per cause (0: all)")
	fs.StringVar(&opt.reportFile, "report", "", "print the report of the results in this earlier --json file; measure nothing")
	fs.StringVar(&opt.proxyFlags, "proxy-flags", "", "extra flags for pgtestproxy serve, space-separated")
	if err := fs.Parse(args); err != nil {
		return opt, err
	}
	for r := range strings.SplitSeq(runs, ",") {
		r = strings.TrimSpace(r)
		if r == "" || r == "direct" {
			continue
		}
		if !slices.Contains(runNames, r) {
			fmt.Fprintf(stderr, "fidelity: unknown run %q (want db-key, tx, tx-key)\n", r)
			return opt, fmt.Errorf("unknown run %q", r)
		}
		opt.runs = append(opt.runs, r)
	}
	for p := range strings.SplitSeq(pkgs, ",") {
		if p = strings.TrimSpace(p); p != "" {
			opt.pkgs = append(opt.pkgs, p)
		}
	}
	var err error
	if opt.root, err = filepath.Abs(opt.root); err != nil {
		return opt, err
	}
	return opt, nil
}

// header says what was measured, for the report.
func (opt options) header() string {
	h := fmt.Sprintf("pgx %s suite (%s), go test -p %d -parallel %d -timeout %s, %s",
		pgxVersion(), strings.Join(opt.pkgs, " "), opt.procs, opt.parallel, opt.timeout,
		time.Now().UTC().Format("2006-01-02 15:04 UTC"))
	if opt.run != "" {
		h += ", -run " + opt.run
	}
	if opt.skip != "" {
		h += ", -skip " + opt.skip
	}
	return h
}

// pgxVersion is the version of pgx this module builds with.
func pgxVersion() string {
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, d := range bi.Deps {
			if d.Path == "github.com/jackc/pgx/v5" {
				return d.Version
			}
		}
	}
	return "(unknown version)"
}
