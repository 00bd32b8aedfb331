package main

import (
	"context"
	"embed"
	"fmt"
	"io"
	"slices"
	"time"

	"go.uber.org/zap"

	"github.com/pgtestproxy/pgtestproxy/internal/pgserver"
	"github.com/pgtestproxy/pgtestproxy/migrations"
	"github.com/pgtestproxy/pgtestproxy/pool"
	"github.com/pgtestproxy/pgtestproxy/proxy"
)

// app runs one subcommand with its configuration.
type app struct {
	cfg            *config
	log            *zap.Logger
	stdout, stderr io.Writer
	hooks          hooks
	status         *statusLine // run's progress indicator; nil when not on a terminal
}

// stack is what a running proxy is made of, closed in reverse order.
type stack struct {
	server    *pgserver.Server // nil with --upstream
	pool      *pool.Pool
	proxy     *proxy.Server
	metrics   *metricsServer // nil without --metrics-listen
	defaultDB string         // the database name a `run` command is given
}

func (s *stack) close(log *zap.Logger) {
	if s.metrics != nil {
		s.metrics.close()
	}
	if s.proxy != nil {
		_ = s.proxy.Close()
	}
	if s.pool != nil {
		if err := s.pool.Close(); err != nil {
			log.Warn("close pool", zap.Error(err))
		}
	}
	if s.server != nil {
		if err := s.server.Close(); err != nil {
			log.Warn("stop embedded postgres", zap.Error(err))
		}
	}
}

// noMigrations is the default template when no --migrations is given: an empty
// database.
var noMigrations embed.FS

// startPool connects to (or starts) the upstream and opens the template pool. The gc
// command runs GC itself (to report it), so it asks for no start-up GC.
func (a *app) startPool(ctx context.Context, st *stack, gcAtStart bool) error {
	upstream := a.cfg.upstream
	if upstream == "" {
		// The stack stops the server itself, after the pool: its life must not end
		// with ctx, which ends first on SIGTERM.
		a.status.begin("starting the embedded PostgreSQL server (the first start runs initdb)")
		srv, err := pgserver.Start(context.WithoutCancel(ctx), pgserver.Config{BinDir: a.cfg.pgBinDir, DataDir: a.cfg.dataDir,
			Logger: a.log.Named("postgres")})
		a.status.end()
		if err != nil {
			return fmt.Errorf("embedded postgres: %w", err)
		}
		st.server, upstream = srv, srv.ConnString("postgres")
	}
	templates, defaultDB, err := a.migrators()
	if err != nil {
		return err
	}
	st.defaultDB = defaultDB
	p, err := pool.New(ctx, pool.Config{
		ConnString:        upstream,
		Templates:         templates,
		PoolSize:          a.cfg.poolSize,
		MaxClones:         a.cfg.maxClones,
		RefillParallelism: a.cfg.refillParallel,
		CloneStrategy:     a.cfg.poolCloneStrategy(),
		AcquireTimeout:    a.cfg.acquireTimeout,
		TTL:               a.cfg.ttl,
		BuildTimeout:      max(10*time.Minute, a.cfg.migrateTimeout+time.Minute), // the command's own bound comes first
		NoStartupGC:       !gcAtStart,
		NoReuse:           !a.cfg.reuseClean,
		Progress:          a.status.build,
		Logger:            a.log.Named("pool"),
	})
	if err != nil {
		return err
	}
	st.pool = p
	return nil
}

// migrators builds each template's Migrator from --migrations, --migrations-format,
// --migrate-cmd, --migrate-watch and --seed. Without --migrations or --migrate-cmd,
// the default template is an empty database (plus its seeds). defaultDB is the
// database name `run` hands its command: any name selects the default template, else
// the first named one.
func (a *app) migrators() (map[string]pool.Migrator, string, error) {
	c := a.cfg
	templates := map[string]pool.Migrator{}
	add := func(name string, src migrations.Step) error {
		steps := []migrations.Step{src}
		for _, file := range c.seeds.of(name) {
			s, err := migrations.OpenSeed(file)
			if err != nil {
				return fmt.Errorf("--seed %s: %w", file, err)
			}
			steps = append(steps, s)
		}
		if len(steps) == 1 {
			templates[name] = src
		} else {
			templates[name] = migrations.NewSequence(steps...)
		}
		return nil
	}
	if len(c.migrations.items)+len(c.migrateCmds.items) == 0 {
		d, err := migrations.OpenFS(noMigrations, ".")
		if err == nil {
			err = add("", d)
		}
		if err != nil {
			return nil, "", err
		}
	}
	for _, m := range c.migrations.items {
		var format migrations.Format
		if f := c.formats.of(m.name); len(f) > 0 {
			format = migrations.Format(f[0])
		}
		d, err := migrations.OpenFormat(m.value, format)
		if err == nil {
			err = add(m.name, d)
		}
		if err != nil {
			return nil, "", fmt.Errorf("--migrations %s: %w", m.value, err)
		}
	}
	for _, m := range c.migrateCmds.items {
		cmd, err := migrations.NewCommand(migrations.CommandConfig{Command: m.value, Watch: c.migrateWatch.of(m.name),
			Timeout: c.migrateTimeout})
		if err == nil {
			err = add(m.name, cmd)
		}
		if err != nil {
			return nil, "", fmt.Errorf("--migrate-cmd %s: %w", m.name, err)
		}
	}
	if _, ok := templates[""]; ok {
		return templates, "test", nil
	}
	names := make([]string, 0, len(templates))
	for name := range templates {
		names = append(names, name)
	}
	slices.Sort(names)
	return templates, names[0], nil
}

// start brings up the whole stack: upstream, pool, proxy listening on listen.
func (a *app) start(ctx context.Context, listen string) (*stack, error) {
	st := &stack{}
	if err := a.startPool(ctx, st, true); err != nil {
		st.close(a.log)
		return nil, err
	}
	srv, err := proxy.New(proxy.Config{
		Addr:             listen,
		Provider:         provider{st.pool},
		Admin:            adminTables(st.pool),
		Password:         a.cfg.password,
		AllowNonLoopback: a.cfg.allowNonLoopback,
		DefaultMode:      a.cfg.mode,
		MaxSessions:      a.cfg.maxSessions,
		ConnectAhead:     a.cfg.connectAhead,
		Version:          versionString(),
		Logger:           a.log.Named("proxy"),
	})
	if err != nil {
		st.close(a.log)
		return nil, err
	}
	st.proxy = srv
	st.pool.Warm(func(template string, took time.Duration, err error) {
		if err == nil {
			a.log.Info("template ready", zap.String("template", template), zap.Duration("took", took))
		}
		if a.hooks.warmed != nil {
			a.hooks.warmed(template, err)
		}
	})
	if a.cfg.metricsListen != "" {
		if st.metrics, err = startMetrics(a.cfg.metricsListen, st, a.log.Named("metrics")); err != nil {
			st.close(a.log)
			return nil, err
		}
		if a.hooks.metrics != nil {
			a.hooks.metrics(st.metrics.ln.Addr().String())
		}
	}
	return st, nil
}

// waitDefault waits, unless --no-wait, until the template a `run` command's database
// selects is built, and says how long that took. A failed build is logged and the
// command runs anyway: its first connection gets the migration's error.
func (a *app) waitDefault(ctx context.Context, st *stack) {
	if a.cfg.noWait {
		return
	}
	began := time.Now()
	a.status.begin(fmt.Sprintf("waiting for the template of database %q", st.defaultDB))
	err := st.pool.Prepare(ctx, st.defaultDB)
	a.status.end()
	if err != nil {
		if ctx.Err() == nil {
			a.log.Error("default template not built; starting the command anyway", zap.Error(err))
		}
		return
	}
	a.log.Info("default template ready; starting the command", zap.String("database", st.defaultDB),
		zap.Duration("waited", time.Since(began)))
}

// serve runs the proxy until ctx ends.
func (a *app) serve(ctx context.Context) int {
	st, err := a.start(ctx, a.cfg.listen)
	if err != nil {
		a.log.Error("start", zap.Error(err))
		return 1
	}
	defer st.close(a.log)
	if a.hooks.ready != nil {
		a.hooks.ready(st.proxy.Addr().String())
	}
	if err := st.proxy.Serve(ctx); err != nil {
		a.log.Error("serve", zap.Error(err))
		return 1
	}
	return 0
}

// runCommand starts the proxy (on a free port unless --listen was given), runs argv
// against it and stops everything; it returns argv's exit status.
func (a *app) runCommand(ctx context.Context, argv []string) int {
	listen := a.cfg.listen
	if !a.cfg.listenGiven {
		listen = "127.0.0.1:0"
	}
	st, err := a.start(ctx, listen)
	if err != nil {
		a.log.Error("start", zap.Error(err))
		return 1
	}
	defer st.close(a.log)
	serveCtx, stopServe := context.WithCancel(ctx)
	served := make(chan struct{})
	go func() {
		defer close(served)
		if err := st.proxy.Serve(serveCtx); err != nil {
			a.log.Error("serve", zap.Error(err))
		}
	}()
	addr := st.proxy.Addr().String()
	if a.hooks.ready != nil {
		a.hooks.ready(addr)
	}
	a.waitDefault(ctx, st)
	code := runChild(ctx, argv, clientEnv(addr, st.defaultDB), a.stdout, a.stderr)
	stopServe()
	<-served
	return code
}

// gc reclaims dead pools' clones and drops what is unused for --ttl, then exits.
func (a *app) gc(ctx context.Context) int {
	st := &stack{}
	defer st.close(a.log)
	if err := a.startPool(ctx, st, false); err != nil {
		a.log.Error("gc", zap.Error(err))
		return 1
	}
	rep, err := st.pool.GC(ctx)
	if err != nil {
		a.log.Error("gc", zap.Error(err))
		return 1
	}
	fmt.Fprintf(a.stdout, "reclaimed %d clones of dead proxies, dropped %d idle clones and %d templates, forgot %d missing databases\n",
		len(rep.Reclaimed), len(rep.Clones), len(rep.Templates), rep.Forgotten)
	return 0
}

// provider adapts the pool to the proxy's LeaseProvider.
type provider struct{ p *pool.Pool }

func (pr provider) Acquire(ctx context.Context, req proxy.LeaseRequest) (proxy.Lease, error) {
	l, err := pr.p.Acquire(ctx, req.Database, req.Mode)
	if err != nil {
		return nil, err
	}
	return lease{l}, nil
}

// AcquireReady claims a ready clone without waiting (proxy.ReadyProvider).
func (pr provider) AcquireReady(ctx context.Context, req proxy.LeaseRequest) (proxy.Lease, error) {
	l, err := pr.p.AcquireReady(ctx, req.Database, req.Mode)
	if l == nil || err != nil {
		return nil, err
	}
	return lease{l}, nil
}

var _ proxy.ReadyProvider = provider{}
var _ proxy.CurrentLease = lease{}

// lease is a pool lease as the proxy sees it: it keeps a tx-mode lease's backend in
// the clone for the clone's next tx-mode lease.
type lease struct{ *pool.Lease }

var _ proxy.BackendKeeper = lease{}

// Keep leaves b in the clone; the pool closes it when it does not hand it out again.
func (l lease) Keep(b *proxy.KeptBackend) { l.Lease.Keep(b) }

// Kept returns the backend the clone's previous tx-mode lease kept, or nil. The pool
// holds only what Keep gave it, so anything else is nil.
func (l lease) Kept() *proxy.KeptBackend {
	b, _ := l.Lease.Kept().(*proxy.KeptBackend)
	return b
}
