package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/pgtestproxy/pgtestproxy/internal/leasemode"
	"github.com/pgtestproxy/pgtestproxy/migrations"
	"github.com/pgtestproxy/pgtestproxy/pool"
)

// envPrefix is the prefix of the environment variables that stand in for flags.
const envPrefix = "PGTESTPROXY_"

// config is everything the command line says.
type config struct {
	listen           string
	upstream         string
	dataDir          string
	pgBinDir         string
	migrations       namedFlag // [NAME=]PATH: a directory of migrations or one SQL file
	formats          namedFlag // [NAME=]FORMAT of a --migrations directory
	seeds            namedFlag // [NAME=]FILE applied after the migrations, in order
	migrateCmds      namedFlag // NAME=COMMAND building the template instead of --migrations
	migrateWatch     namedFlag // [NAME=]PATH keying a --migrate-cmd template
	migrateTimeout   time.Duration
	poolSize         int
	maxClones        int
	refillParallel   int    // clones created (and, separately, dropped) at once; 0 = the pool's default
	cloneStrategy    string // auto, wal_log or file_copy (any case)
	mode             leasemode.Mode
	ttl              time.Duration
	acquireTimeout   time.Duration
	password         string
	allowNonLoopback bool
	maxSessions      int
	noWait           bool // run: start the command without waiting for the default template
	reuseClean       bool // db mode: put clones a lease left unchanged back in the pool
	connectAhead     bool // db mode: keep a lease connected ahead of the next client
	logFormat        string
	logLevel         string
	metricsListen    string
	listenGiven      bool // --listen or PGTESTPROXY_LISTEN was set
}

// named is one NAME=VALUE of a per-template flag ("" is the default template).
type named struct{ name, value string }

// namedFlag is a repeatable per-template flag: [NAME=]VALUE, or NAME=VALUE when the
// value may hold '=' itself (a shell command).
type namedFlag struct {
	flag     string // the flag's name, for messages
	once     bool   // each template may be given once
	needName bool   // NAME= is required
	list     bool   // a comma-separated list is several values (the PGTESTPROXY_ form)
	items    []named
}

func (f *namedFlag) String() string {
	if f == nil {
		return ""
	}
	parts := make([]string, len(f.items))
	for i, it := range f.items {
		parts[i] = it.name + "=" + it.value
	}
	return strings.Join(parts, ",")
}

// Set takes one value, or a comma-separated list of them for a list flag.
func (f *namedFlag) Set(v string) error {
	items := []string{v}
	if f.list {
		items = strings.Split(v, ",")
	}
	for _, item := range items {
		if f.list {
			if item = strings.TrimSpace(item); item == "" {
				continue
			}
		}
		var it named
		name, value, ok := strings.Cut(item, "=")
		switch {
		case ok:
			it = named{name: name, value: value}
		case f.needName:
			return fmt.Errorf("--%s %q: want NAME=VALUE (=VALUE for the default template)", f.flag, item)
		default:
			it = named{value: item}
		}
		if it.value == "" {
			return fmt.Errorf("--%s %q: empty value", f.flag, item)
		}
		if f.once && slices.ContainsFunc(f.items, func(have named) bool { return have.name == it.name }) {
			return fmt.Errorf("--%s: template %q given twice", f.flag, it.name)
		}
		f.items = append(f.items, it)
	}
	return nil
}

// of returns the values given for template name, in order.
func (f *namedFlag) of(name string) []string {
	var out []string
	for _, it := range f.items {
		if it.name == name {
			out = append(out, it.value)
		}
	}
	return out
}

// parseFlags reads args, then fills every flag not given from PGTESTPROXY_<FLAG>
// (upper case, '-' → '_'): flags win over the environment.
func parseFlags(name string, args []string, getenv func(string) string, stderr io.Writer) (*config, []string, error) {
	c := &config{
		migrations:   namedFlag{flag: "migrations", once: true, list: true},
		formats:      namedFlag{flag: "migrations-format", once: true, list: true},
		seeds:        namedFlag{flag: "seed", list: true},
		migrateCmds:  namedFlag{flag: "migrate-cmd", once: true, needName: true},
		migrateWatch: namedFlag{flag: "migrate-watch", list: true},
	}
	fs := flag.NewFlagSet("pgtestproxy "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&c.listen, "listen", "127.0.0.1:6543", "address for clients (`run` picks a free port when not given)")
	fs.StringVar(&c.upstream, "upstream", "", "DSN of the PostgreSQL server to administer (empty: an embedded server)")
	fs.StringVar(&c.dataDir, "data-dir", "", "embedded server's data directory (default: a tmpfs with room, else the user cache dir)")
	fs.StringVar(&c.pgBinDir, "pg-bin-dir", "", "directory with initdb, pg_ctl and postgres (default: discovered)")
	fs.Var(&c.migrations, "migrations", "`[NAME=]PATH`: a migrations directory (golang-migrate, goose, dbmate, Flyway, Prisma) or one SQL file (a schema dump), repeatable; the unnamed one is the default template")
	fs.Var(&c.formats, "migrations-format", "`[NAME=]FORMAT` of a --migrations directory when detection cannot tell: "+strings.Join(formatNames(), ", "))
	fs.Var(&c.seeds, "seed", "`[NAME=]FILE.sql` applied after the template's migrations, repeatable, in order")
	fs.Var(&c.migrateCmds, "migrate-cmd", "`NAME=COMMAND` run with sh -c against the empty template database (DATABASE_URL, PGHOST, …) instead of --migrations; =COMMAND for the default template")
	fs.Var(&c.migrateWatch, "migrate-watch", "`[NAME=]PATH` (file, directory or glob) whose names and contents key a --migrate-cmd template, repeatable")
	fs.DurationVar(&c.migrateTimeout, "migrate-timeout", 10*time.Minute, "bound on one --migrate-cmd run; its process group is killed after it")
	fs.IntVar(&c.poolSize, "pool-size", 4, "ready clones kept warm per template")
	fs.IntVar(&c.maxClones, "max-clones", 64, "clones that may exist at once across all templates")
	fs.IntVar(&c.refillParallel, "refill-parallelism", 0, "clones created (and, separately, dropped) at once; the upstream connections kept free for this work follow it (0: the default, "+strconv.Itoa(pool.DefaultRefillParallelism)+")")
	fs.StringVar(&c.cloneStrategy, "clone-strategy", "auto", "CREATE DATABASE strategy of clones (PostgreSQL 15+): wal_log, file_copy, or auto (time both per template, use the faster)")
	fs.BoolVar(&c.reuseClean, "reuse-clean", true, "db mode: put a clone back in the pool when the server's evidence shows its lease changed nothing (false: drop every db-mode clone)")
	fs.BoolVar(&c.connectAhead, "connect-ahead", true, "db mode: keep one clone leased and its backend connected ahead of the next client with the same startup parameters (false: connect when the client does)")
	fs.StringVar((*string)(&c.mode), "mode", string(leasemode.DB), "lease mode when the client names none: db or tx")
	fs.DurationVar(&c.ttl, "ttl", 24*time.Hour, "templates and idle clones unused this long are dropped")
	fs.DurationVar(&c.acquireTimeout, "acquire-timeout", 30*time.Second, "how long a client waits for a clone before SQLSTATE 53300")
	fs.StringVar(&c.password, "password", "", "client password; turns on SCRAM-SHA-256 for clients (default: trust)")
	fs.BoolVar(&c.allowNonLoopback, "allow-non-loopback", false, "allow listening on a non-loopback address without --password")
	fs.IntVar(&c.maxSessions, "max-sessions", 1000, "client sessions at once; more are refused with SQLSTATE 53300")
	fs.BoolVar(&c.noWait, "no-wait", false, "run: start the command at once instead of waiting for the default template to be built")
	fs.StringVar(&c.metricsListen, "metrics-listen", "", "address serving Prometheus /metrics, /healthz and /readyz (default: off)")
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
	switch strings.ToLower(c.cloneStrategy) {
	case "auto", "wal_log", "file_copy":
	default:
		return fmt.Errorf("--clone-strategy %q: want auto, wal_log or file_copy", c.cloneStrategy)
	}
	if c.poolSize < 0 || c.maxClones < 1 || c.maxSessions < 1 || c.refillParallel < 0 {
		return fmt.Errorf("--pool-size and --refill-parallelism must be ≥ 0, --max-clones and --max-sessions ≥ 1")
	}
	return c.validateTemplates()
}

// poolCloneStrategy is --clone-strategy as the pool takes it: "" for auto.
func (c *config) poolCloneStrategy() string {
	if s := strings.ToUpper(c.cloneStrategy); s != "AUTO" {
		return s
	}
	return ""
}

// validateTemplates checks that every per-template flag names a template that
// --migrations or --migrate-cmd defines (or the default one when neither is given).
func (c *config) validateTemplates() error {
	dirs, cmds := map[string]bool{}, map[string]bool{}
	for _, it := range slices.Concat(c.migrations.items, c.migrateCmds.items) {
		if strings.Contains(it.name, "+") {
			return fmt.Errorf("template name %q: may not contain '+' (it separates the mode and the session key in a database name)", it.name)
		}
	}
	for _, it := range c.migrations.items {
		dirs[it.name] = true
	}
	for _, it := range c.migrateCmds.items {
		if dirs[it.name] {
			return fmt.Errorf("template %q has both --migrations and --migrate-cmd", it.name)
		}
		cmds[it.name] = true
	}
	for _, it := range c.formats.items {
		if !dirs[it.name] {
			return fmt.Errorf("--migrations-format %s=%s: no --migrations for template %q", it.name, it.value, it.name)
		}
		if _, err := migrations.ParseFormat(it.value); err != nil {
			return fmt.Errorf("--migrations-format %s=%s: %w", it.name, it.value, err)
		}
	}
	for _, it := range c.migrateWatch.items {
		if !cmds[it.name] {
			return fmt.Errorf("--migrate-watch %s=%s: no --migrate-cmd for template %q", it.name, it.value, it.name)
		}
	}
	for _, it := range c.seeds.items {
		if !dirs[it.name] && !cmds[it.name] && (it.name != "" || len(dirs)+len(cmds) > 0) {
			return fmt.Errorf("--seed %s=%s: no --migrations or --migrate-cmd for template %q", it.name, it.value, it.name)
		}
	}
	if c.migrateTimeout < 0 {
		return fmt.Errorf("--migrate-timeout %v is negative", c.migrateTimeout)
	}
	return nil
}

func formatNames() []string {
	names := make([]string, len(migrations.Formats))
	for i, f := range migrations.Formats {
		names[i] = string(f)
	}
	return names
}
