package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"strings"
	"time"

	"github.com/pgtestproxy/pgtestproxy/internal/leasemode"
)

// envPrefix is the prefix of the environment variables that stand in for flags.
const envPrefix = "PGTESTPROXY_"

// config is everything the command line says.
type config struct {
	listen           string
	upstream         string
	dataDir          string
	pgBinDir         string
	migrations       templateDirs
	poolSize         int
	maxClones        int
	mode             leasemode.Mode
	ttl              time.Duration
	acquireTimeout   time.Duration
	password         string
	allowNonLoopback bool
	maxSessions      int
	logFormat        string
	logLevel         string
	listenGiven      bool // --listen or PGTESTPROXY_LISTEN was set
}

// templateDirs is the repeatable --migrations [NAME=]DIR flag.
type templateDirs []templateDir

type templateDir struct{ name, dir string }

func (t *templateDirs) String() string {
	parts := make([]string, len(*t))
	for i, d := range *t {
		parts[i] = d.name + "=" + d.dir
	}
	return strings.Join(parts, ",")
}

// Set takes one [NAME=]DIR, or a comma-separated list of them (the form the
// PGTESTPROXY_MIGRATIONS variable uses).
func (t *templateDirs) Set(v string) error {
	for item := range strings.SplitSeq(v, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		var d templateDir
		if name, dir, ok := strings.Cut(item, "="); ok {
			d = templateDir{name: name, dir: dir}
		} else {
			d = templateDir{dir: item}
		}
		if d.dir == "" {
			return fmt.Errorf("--migrations %q: no directory", item)
		}
		for _, have := range *t {
			if have.name == d.name {
				return fmt.Errorf("--migrations: template %q given twice", d.name)
			}
		}
		*t = append(*t, d)
	}
	return nil
}

// parseFlags reads args, then fills every flag not given from PGTESTPROXY_<FLAG>
// (upper case, '-' → '_'): flags win over the environment.
func parseFlags(name string, args []string, getenv func(string) string, stderr io.Writer) (*config, []string, error) {
	c := &config{}
	fs := flag.NewFlagSet("pgtestproxy "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&c.listen, "listen", "127.0.0.1:6543", "address for clients (`run` picks a free port when not given)")
	fs.StringVar(&c.upstream, "upstream", "", "DSN of the PostgreSQL server to administer (empty: an embedded server)")
	fs.StringVar(&c.dataDir, "data-dir", "", "embedded server's data directory (default: a tmpfs with room, else the user cache dir)")
	fs.StringVar(&c.pgBinDir, "pg-bin-dir", "", "directory with initdb, pg_ctl and postgres (default: discovered)")
	fs.Var(&c.migrations, "migrations", "`[NAME=]DIR` of golang-migrate files, repeatable; the unnamed one is the default template")
	fs.IntVar(&c.poolSize, "pool-size", 4, "ready clones kept warm per template")
	fs.IntVar(&c.maxClones, "max-clones", 64, "clones that may exist at once across all templates")
	fs.StringVar((*string)(&c.mode), "mode", string(leasemode.DB), "lease mode when the client names none: db or tx")
	fs.DurationVar(&c.ttl, "ttl", 24*time.Hour, "templates and idle clones unused this long are dropped")
	fs.DurationVar(&c.acquireTimeout, "acquire-timeout", 30*time.Second, "how long a client waits for a clone before SQLSTATE 53300")
	fs.StringVar(&c.password, "password", "", "client password; turns on SCRAM-SHA-256 for clients (default: trust)")
	fs.BoolVar(&c.allowNonLoopback, "allow-non-loopback", false, "allow listening on a non-loopback address without --password")
	fs.IntVar(&c.maxSessions, "max-sessions", 1000, "client sessions at once; more are refused with SQLSTATE 53300")
	fs.StringVar(&c.logFormat, "log-format", "console", "console or json")
	fs.StringVar(&c.logLevel, "log-level", "info", "debug, info, warn or error")
	if err := fs.Parse(args); err != nil {
		return nil, nil, err
	}
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	var errs []error
	fs.VisitAll(func(f *flag.Flag) {
		env := envPrefix + strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_"))
		if v := getenv(env); v != "" && !given[f.Name] {
			if err := f.Value.Set(v); err != nil {
				errs = append(errs, fmt.Errorf("%s=%q: %w", env, v, err))
			}
		}
	})
	if err := errors.Join(errs...); err != nil {
		return nil, nil, err
	}
	c.listenGiven = given["listen"] || getenv(envPrefix+"LISTEN") != ""
	return c, fs.Args(), c.validate()
}

func (c *config) validate() error {
	if !c.mode.Valid() {
		return fmt.Errorf("--mode %q: want db or tx", c.mode)
	}
	switch c.logFormat {
	case "console", "json":
	default:
		return fmt.Errorf("--log-format %q: want console or json", c.logFormat)
	}
	if _, _, err := net.SplitHostPort(c.listen); err != nil {
		return fmt.Errorf("--listen %q: %w", c.listen, err)
	}
	if c.poolSize < 0 || c.maxClones < 1 || c.maxSessions < 1 {
		return fmt.Errorf("--pool-size must be ≥ 0, --max-clones and --max-sessions ≥ 1")
	}
	return nil
}
