package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"runtime/debug"
)

// version is set at build time with -ldflags "-X main.version=…"; otherwise it comes
// from the module's build information.
var version = ""

func versionString() string {
	if version != "" {
		return version
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return "dev"
}

const usage = `usage:
  pgtestproxy [serve] [flags]        run the proxy until SIGINT/SIGTERM
  pgtestproxy run [flags] -- CMD...  start the proxy, run CMD with DATABASE_URL and PG* set, stop; exit with CMD's status
  pgtestproxy gc [flags]             drop stale templates and leaked clones now, then exit
  pgtestproxy version
Every flag also reads PGTESTPROXY_<FLAG> (upper case, '-' → '_'); flags win.
Run "pgtestproxy serve -h" for the flags.
`

// hooks lets tests observe a running proxy without sleeping or reading logs.
type hooks struct {
	ready   func(addr string) // called once the proxy accepts clients
	metrics func(addr string) // called once --metrics-listen serves
	// warmed is called once per template when its start-up build has finished (err
	// nil) or failed.
	warmed func(template string, err error)
}

// run is main without the process: it parses args, runs the subcommand until ctx ends
// and returns the exit status.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	return runWith(ctx, args, getenv, stdout, stderr, hooks{})
}

func runWith(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer, h hooks) int {
	cmd := "serve"
	if len(args) > 0 && len(args[0]) > 0 && args[0][0] != '-' {
		cmd, args = args[0], args[1:]
	}
	switch cmd {
	case "version":
		fmt.Fprintln(stdout, "pgtestproxy", versionString())
		return 0
	case "help":
		fmt.Fprint(stdout, usage)
		return 0
	case "serve", "run", "gc":
	default:
		fmt.Fprintf(stderr, "pgtestproxy: unknown command %q\n%s", cmd, usage)
		return 2
	}
	c, rest, err := parseFlags(cmd, args, getenv, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "pgtestproxy %s: %v\n", cmd, err)
		return 2
	}
	if cmd == "run" && len(rest) == 0 {
		fmt.Fprintf(stderr, "pgtestproxy run: no command given (pgtestproxy run [flags] -- CMD...)\n")
		return 2
	}
	if cmd != "run" && len(rest) > 0 {
		fmt.Fprintf(stderr, "pgtestproxy %s: unexpected arguments %q\n", cmd, rest)
		return 2
	}
	var status *statusLine // run's progress indicator, when stderr is a terminal
	logTo := stderr
	if cmd == "run" {
		if status = newStatusLine(stderr); status != nil {
			defer status.close()
			logTo = status
		}
	}
	log, err := newLogger(c.logFormat, c.logLevel, logTo)
	if err != nil {
		fmt.Fprintf(stderr, "pgtestproxy: %v\n", err)
		return 2
	}
	defer log.Sync() //nolint:errcheck // stderr sync errors are not actionable
	a := &app{cfg: c, log: log, stdout: stdout, stderr: stderr, hooks: h, status: status}
	switch cmd {
	case "gc":
		return a.gc(ctx)
	case "run":
		return a.runCommand(ctx, rest)
	default:
		return a.serve(ctx)
	}
}
