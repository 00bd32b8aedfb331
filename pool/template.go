package pool

import (
	"context"
	"errors"
	"fmt"
	"github.com/jackc/pgerrcode"
	"github.com/pgtestproxy/pgtestproxy/internal/pgerr"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"go.uber.org/zap"
)

// errTemplateGone means a template database vanished (dropped by GC elsewhere) after it
// was built; the next Acquire builds it again.
var errTemplateGone = errors.New("template database is gone")

// errTemplateChanged means the template a waiting Acquire waits on is no longer its
// name's current one: its migrations changed.
var errTemplateChanged = errors.New("template changed while waiting")

// hashRecheck is how often a waiting Acquire hashes its migrations again, to notice a
// change no other Acquire has seen yet.
const hashRecheck = 500 * time.Millisecond

// changes returns a channel closed at tpl's next change of template.
func (t *template) changes() <-chan struct{} {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.changed == nil {
		t.changed = make(chan struct{})
	}
	return t.changed
}

// swap makes g tpl's current template, waking those waiting on a change when it is
// one; it returns the previous one.
func (t *template) swap(g *generation) *generation {
	t.mu.Lock()
	defer t.mu.Unlock()
	old := t.cur.Swap(g)
	if old != g && t.changed != nil {
		close(t.changed)
		t.changed = nil
	}
	return old
}

// stale reports whether an Acquire waiting on gen should move: tpl's current template
// is another, or (when rehash) its migrations now hash to another.
func (p *Pool) stale(ctx context.Context, tpl *template, gen *generation, rehash bool) bool {
	if tpl.cur.Load() != gen {
		return true
	}
	if !rehash {
		return false
	}
	hash, err := tpl.mig.Hash(ctx, p.major, p.cfg.catalogVersion)
	return err == nil && hash != gen.hash
}

// generation is one built template database: the result of one hash.
type generation struct {
	hash     string
	datname  string
	template string // name of the template that built it
	strategy string // CREATE DATABASE strategy for its clones ("" = server default)

	waiters atomic.Int32 // Acquires waiting for a clone
	// waitedAt: unix nanos when the last waiter stopped waiting (refill.go, wantsRoom).
	waitedAt atomic.Int64
	// dbWaiters are the db-mode ones among waiters: they cannot take the ready clones
	// holding a backend this process kept for tx leases.
	dbWaiters atomic.Int32
	inflight  atomic.Int32 // clones this process is creating
	surplus   atomic.Int32 // of those, queued ones no longer needed: they quit (refill.go)
	roomMade  atomic.Int32 // kept clones dropped for db-mode waiters, not yet used by a creation (evictkept.go)
	lastUsed  atomic.Int64 // unix nanos of the last Acquire
	flushed   atomic.Int64 // lastUsed as last written to the catalog
	dead      atomic.Bool  // the template database vanished
	trimming  atomic.Bool  // a trim of excess ready clones is running
	// inside is the in-clone part of a new clone's evidence (reuse.go): read from the
	// first clone, the same in every clone, since each is a copy of the sealed template.
	inside atomic.Pointer[string]
	// leasedDB counts this process's db-mode leases of it whose clones have evidence
	// and are not judged yet; reuseRate is the recent share of db-mode leases whose
	// clones came back (reuserate.go).
	leasedDB, reuseRate atomic.Int32

	mu      sync.Mutex
	notify  chan struct{} // closed when a clone becomes ready
	dbQueue []*dbTicket   // the db-mode waiters, first come first; a clone they may take wakes one (wake.go)
	backoff time.Time     // no refill before this (after a failure)
}

func newGeneration(hash, datname, template, strategy string) *generation {
	return &generation{hash: hash, datname: datname, template: template, strategy: strategy, notify: make(chan struct{})}
}

// ready returns a channel closed at the next signal.
func (g *generation) ready() <-chan struct{} {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.notify
}

// signal says a clone of g became ready: it wakes the tx-mode waiters and the first
// db-mode one (wake.go); every db-mode one when g is dead.
func (g *generation) signal() {
	g.mu.Lock()
	close(g.notify)
	g.notify = make(chan struct{})
	g.wakeDB(g.dead.Load())
	g.mu.Unlock()
}

// buildCall is a build in flight that Acquires of the same hash wait for.
type buildCall struct {
	done chan struct{}
	gen  *generation
	err  error
}

// templateName is the database name of the template for hash.
func (p *Pool) templateName(hash string) string {
	prefix := p.namePrefix() + "tpl_"
	return prefix + hash[:min(24, len(hash), 63-len(prefix))]
}

// generationFor returns the built template for tpl's current migrations, building it
// (once, across all processes) when needed.
func (p *Pool) generationFor(ctx context.Context, tpl *template) (*generation, error) {
	hash, err := tpl.mig.Hash(ctx, p.major, p.cfg.catalogVersion)
	if err != nil {
		return nil, fmt.Errorf("template %q: hash migrations: %w", tpl.name, err)
	}
	if len(hash) < 16 {
		return nil, fmt.Errorf("template %q: migrator returned a short hash %q", tpl.name, hash)
	}
	if g := tpl.cur.Load(); g != nil && g.hash == hash && !g.dead.Load() {
		return g, nil
	}
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil, ErrClosed
	}
	if g := p.gens[hash]; g != nil && !g.dead.Load() {
		p.mu.Unlock()
		p.setCurrent(tpl, g)
		return g, nil
	}
	call := p.builds[hash]
	if call == nil {
		call = &buildCall{done: make(chan struct{})}
		p.builds[hash] = call
		p.wg.Add(1)
		go p.runBuild(call, tpl, hash)
	}
	p.mu.Unlock()
	select {
	case <-call.done:
	case <-ctx.Done():
		return nil, fmt.Errorf("wait for template %q to build: %w", tpl.name, ctx.Err())
	case <-p.closing:
		return nil, ErrClosed
	}
	if call.err != nil {
		return nil, call.err
	}
	p.setCurrent(tpl, call.gen)
	return call.gen, nil
}

// setCurrent makes g tpl's template; the previous one's ready clones are retired when
// no template uses it any more.
func (p *Pool) setCurrent(tpl *template, g *generation) {
	old := tpl.swap(g)
	p.kickRefill()
	if old == nil || old == g || p.inUse(old) {
		return
	}
	p.log.Info("template changed", zap.String("template", tpl.name),
		zap.String("from", old.datname), zap.String("to", g.datname))
	p.goBackground(func() { p.retireReady(old) })
}

// inUse reports whether g is the current template of any name.
func (p *Pool) inUse(g *generation) bool {
	for _, t := range p.templates {
		if t.cur.Load() == g {
			return true
		}
	}
	return false
}

// active returns the distinct current templates.
func (p *Pool) active() []*generation {
	var gens []*generation
	for _, t := range p.templates {
		if g := t.cur.Load(); g != nil && !g.dead.Load() && !containsGen(gens, g) {
			gens = append(gens, g)
		}
	}
	return gens
}

func containsGen(gens []*generation, g *generation) bool {
	for _, x := range gens {
		if x == g {
			return true
		}
	}
	return false
}

func (p *Pool) runBuild(call *buildCall, tpl *template, hash string) {
	defer p.wg.Done()
	ctx, cancel := context.WithTimeout(p.ctx, p.cfg.BuildTimeout)
	defer cancel()
	gen, err := p.buildFor(ctx, tpl, hash)
	p.mu.Lock()
	delete(p.builds, hash)
	if err == nil {
		p.gens[hash] = gen
	}
	p.mu.Unlock()
	call.gen, call.err = gen, err
	close(call.done)
}

// buildSpec is one template database a build makes: the template itself, or a prefix
// of its migrations kept as the base of later builds.
type buildSpec struct {
	hash    string
	datname string
	prefix  bool   // a prefix template: a base for builds, never leased from
	base    string // template database to clone ("" = start from an empty database)
	from    int    // migration steps base holds
	// strategy is base's CREATE DATABASE strategy, found when it was cloned.
	strategy string
	// migrate applies what the database lacks, given the steps it holds.
	migrate func(ctx context.Context, connString string, from int) error
}

// fullSpec builds the template for hash from an empty database.
func (p *Pool) fullSpec(tpl *template, hash string) buildSpec {
	return buildSpec{hash: hash, datname: p.templateName(hash), migrate: func(ctx context.Context, cs string, _ int) error {
		return tpl.mig.Migrate(ctx, cs, hash)
	}}
}

// build makes the template database for spec unless another process already has. It
// holds the template's advisory lock throughout, so one build happens across all
// processes; a half-built template left by a crash is dropped and built again.
func (p *Pool) build(ctx context.Context, tpl *template, spec buildSpec) (*generation, error) {
	datname := spec.datname
	// A connection of its own, not one of the admin pool's: it is held for the whole
	// build (while the build itself needs admin connections), and closing it releases
	// the lock whatever happens.
	conn, err := pgx.ConnectConfig(ctx, p.catalogConfig())
	if err != nil {
		return nil, p.upstreamErr("build template "+datname, err)
	}
	defer func() {
		cctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		conn.Close(cctx)
	}()
	if _, err := conn.Exec(ctx, "SELECT pg_advisory_lock($1, hashtext($2))", lockClass, datname); err != nil {
		return nil, p.upstreamErr("wait for template lock "+datname, err)
	}

	var state, strategy string
	var sealed bool
	err = conn.QueryRow(ctx, `SELECT t.state, t.strategy, coalesce(d.datistemplate, false)
		FROM template_dbs t LEFT JOIN pg_database d ON d.datname = t.datname WHERE t.datname = $1`,
		datname).Scan(&state, &strategy, &sealed)
	switch {
	case err == nil && state == "ready" && sealed:
		// A prefix template that is now a template of its own is no longer a mere base.
		_, err := conn.Exec(ctx, "UPDATE template_dbs SET last_used = now(), prefix = prefix AND $2 WHERE datname = $1",
			datname, spec.prefix)
		return newGeneration(spec.hash, datname, tpl.name, strategy), p.upstreamErr("touch template "+datname, err)
	case err == nil:
		p.log.Warn("dropping half-built template", zap.String("template", tpl.name),
			zap.String("database", datname), zap.String("state", state))
		if err := p.dropTemplate(ctx, conn, datname); err != nil {
			return nil, err
		}
	case err != pgx.ErrNoRows:
		return nil, p.upstreamErr("read template "+datname, err)
	}
	return p.buildLocked(ctx, conn, tpl, spec)
}

// buildLocked creates, migrates, seals and measures a template; the caller holds its lock.
func (p *Pool) buildLocked(ctx context.Context, conn *pgx.Conn, tpl *template, spec buildSpec) (*generation, error) {
	datname := spec.datname
	log := p.log.With(zap.String("template", tpl.name), zap.String("database", datname))
	log.Info("building template", zap.String("source", tpl.mig.Describe()),
		zap.String("base", spec.base), zap.Int("base_steps", spec.from), zap.Bool("prefix", spec.prefix))
	began := time.Now()
	if _, err := conn.Exec(ctx, `INSERT INTO template_dbs (datname, hash, template, state, builder)
		VALUES ($1, $2, $3, 'building', $4)`, datname, spec.hash, tpl.name, p.owner); err != nil {
		return nil, p.upstreamErr("record template "+datname, err)
	}
	spec, err := p.createTemplateDB(ctx, conn, spec)
	if err == nil {
		mctx, tracker := p.trackBuild(ctx, log, tpl)
		err = spec.migrate(mctx, p.connString(datname), spec.from)
		tracker.end()
		if err != nil {
			err = fmt.Errorf("build template %q (%s): %w", tpl.name, datname, err)
		}
	}
	if err == nil {
		err = p.seal(ctx, conn, datname)
	}
	if err != nil {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), closeTimeout)
		defer cancel()
		if derr := p.dropTemplate(cctx, conn, datname); derr != nil {
			log.Warn("drop failed template", zap.Error(derr))
		}
		return nil, err
	}
	buildTime := time.Since(began)
	p.counters.builds.Add(1)
	p.counters.buildTime.Observe(buildTime)
	gen := newGeneration(spec.hash, datname, tpl.name, "")
	var walLog, fileCopy time.Duration
	switch {
	case p.cfg.CloneStrategy != "":
		gen.strategy = p.cfg.CloneStrategy
	case spec.strategy != "": // a base one migration smaller clones alike: keep its measured choice
		gen.strategy = spec.strategy
	case !spec.prefix: // a prefix is cloned once per build; only a leased template's clones are worth measuring
		walLog, fileCopy = p.measure(ctx, gen)
		gen.strategy = faster(walLog, fileCopy)
	}
	_, err = conn.Exec(ctx, `UPDATE template_dbs SET state = 'ready', built_at = now(), last_used = now(),
		build_ms = $2, strategy = $3, wal_log_ms = $4, file_copy_ms = $5, base = $6, base_steps = $7, prefix = $8
		WHERE datname = $1`,
		datname, ms(buildTime), gen.strategy, msOrNil(walLog), msOrNil(fileCopy), spec.base, spec.from, spec.prefix)
	if err != nil {
		return nil, p.upstreamErr("record template "+datname, err)
	}
	log.Info("template built", zap.Duration("took", buildTime), zap.String("strategy", gen.strategy),
		zap.Duration("wal_log", walLog), zap.Duration("file_copy", fileCopy))
	return gen, nil
}

// createTemplateDB creates the database of spec: a clone of its base, or an empty
// one. A base that can no longer be cloned (dropped meanwhile) is left out, and the
// returned spec says so.
func (p *Pool) createTemplateDB(ctx context.Context, conn *pgx.Conn, spec buildSpec) (buildSpec, error) {
	if spec.base != "" {
		strategy, err := p.cloneBase(ctx, conn, spec.datname, spec.base)
		if err == nil {
			spec.strategy = strategy
			return spec, nil
		}
		p.log.Warn("clone template base; building from an empty database", zap.String("database", spec.datname),
			zap.String("base", spec.base), zap.Error(err))
		spec.base, spec.from = "", 0
	}
	create := "CREATE DATABASE " + ident(spec.datname)
	_, err := conn.Exec(ctx, create)
	if pgerr.SQLState(err) == pgerrcode.DuplicateDatabase { // ours by its generated name, but lost from the catalog
		if err = p.dropDatabase(ctx, spec.datname); err == nil {
			_, err = conn.Exec(ctx, create)
		}
	}
	return spec, p.upstreamErr("create template database "+spec.datname, err)
}

// cloneBase creates datname as a copy of the template base, holding base's lock so
// that GC cannot drop it meanwhile, marks base used and returns its strategy.
func (p *Pool) cloneBase(ctx context.Context, conn *pgx.Conn, datname, base string) (string, error) {
	if _, err := conn.Exec(ctx, "SELECT pg_advisory_lock($1, hashtext($2))", lockClass, base); err != nil {
		return "", err
	}
	defer func() {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), closeTimeout)
		defer cancel()
		if _, err := conn.Exec(cctx, "SELECT pg_advisory_unlock($1, hashtext($2))", lockClass, base); err != nil {
			conn.Close(cctx) // a closed session releases its locks; the build then fails on it
		}
	}()
	var strategy string
	err := conn.QueryRow(ctx, `UPDATE template_dbs t SET last_used = now() FROM pg_database d
		WHERE t.datname = $1 AND t.state = 'ready' AND d.datname = t.datname AND d.datistemplate
		RETURNING t.strategy`, base).Scan(&strategy)
	if err != nil {
		return "", fmt.Errorf("find base %s: %w", base, err)
	}
	sql := "CREATE DATABASE " + ident(datname) + " TEMPLATE " + ident(base)
	if strategy != "" {
		sql += " STRATEGY " + strategy
	}
	_, err = conn.Exec(ctx, sql)
	return strategy, err
}

// seal marks a migrated database as a template no one can connect to, once the
// migration's own backends have gone.
func (p *Pool) seal(ctx context.Context, conn *pgx.Conn, datname string) error {
	if err := p.waitNoBackends(ctx, datname); err != nil {
		return err
	}
	_, err := conn.Exec(ctx, "ALTER DATABASE "+ident(datname)+" IS_TEMPLATE true ALLOW_CONNECTIONS false")
	return p.upstreamErr("seal template "+datname, err)
}

func unlockTemplate(conn *pgxpool.Conn, datname string) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := conn.Exec(ctx, "SELECT pg_advisory_unlock($1, hashtext($2))", lockClass, datname); err != nil {
		conn.Conn().Close(ctx) // a closed session releases its locks; the pool discards it
	}
}

// measureRounds is how many clones of each strategy measure makes, at most: no more
// than the pool keeps (PoolSize), and always one.
const measureRounds = 2

// measure clones the new template up to measureRounds times with each strategy in
// turn (PostgreSQL 15+), keeping the clones as ready ones, and returns each strategy's
// fastest time (0 = not measured). One clone each was not enough: the first clone of a
// strategy pays for what ran before it (a FILE_COPY clone's checkpoint writes the pages
// the build and a WAL_LOG clone just dirtied; the template's catalogs are not cached
// yet), and on a small template that made WAL_LOG look faster where FILE_COPY then
// cloned at 1.5× its rate under load (seen: db mode alone 33 against 50 leases/s, 50
// clients, PostgreSQL 15 on tmpfs).
func (p *Pool) measure(ctx context.Context, gen *generation) (walLog, fileCopy time.Duration) {
	if p.major < 15 {
		return 0, 0
	}
	rounds := max(1, min(measureRounds, p.cfg.PoolSize/2))
	for _, s := range []string{"WAL_LOG", "FILE_COPY"} {
		for round := range rounds {
			took, err := p.createClone(ctx, gen, s)
			if err != nil && round > 0 {
				break // one was measured (the cap, say, stops the next)
			}
			if err != nil {
				p.log.Warn("measure clone strategy", zap.String("database", gen.datname), zap.String("strategy", s), zap.Error(err))
				return 0, 0
			}
			best := &walLog
			if s == "FILE_COPY" {
				best = &fileCopy
			}
			if *best == 0 || took < *best {
				*best = took
			}
		}
	}
	return walLog, fileCopy
}

// faster picks the strategy with the shorter measured time.
func faster(walLog, fileCopy time.Duration) string {
	switch {
	case walLog == 0 || fileCopy == 0:
		return ""
	case fileCopy < walLog:
		return "FILE_COPY"
	default:
		return "WAL_LOG"
	}
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func msOrNil(d time.Duration) any {
	if d == 0 {
		return nil
	}
	return ms(d)
}

// connString is the upstream's connection string pointed at database db.
func (p *Pool) connString(db string) string {
	s := p.cfg.ConnString
	if strings.HasPrefix(s, "postgres://") || strings.HasPrefix(s, "postgresql://") {
		return urlWithDatabase(s, db)
	}
	return s + " dbname=" + dsnQuote(db)
}

func dsnQuote(v string) string {
	return "'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(v) + "'"
}
