package pool

import (
	"context"
	crand "crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"github.com/jackc/pgerrcode"
	"github.com/pgtestproxy/pgtestproxy/internal/leasemode"
	"github.com/pgtestproxy/pgtestproxy/internal/pgerr"
	"io"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"go.uber.org/zap"
)

// closeTimeout bounds the clean-up Close does on the upstream.
const closeTimeout = 15 * time.Second

// Pool leases clones of template databases. Its methods are safe for concurrent use.
type Pool struct {
	cfg   Config
	log   *zap.Logger
	owner int64 // this instance's id and the key of the advisory lock it holds
	major int   // upstream's major version
	base  *pgx.ConnConfig
	addr  string

	cat   *pgxpool.Pool // short catalog statements: claims, releases, counts
	admin *pgxpool.Pool // slow work: CREATE/DROP DATABASE, builds, GC
	lockC *pgx.Conn     // holds the owner lock; used by the maintain goroutine only

	templates map[string]*template // immutable after New
	names     []string             // sorted template names, for messages

	kick      chan struct{} // wakes the refill loop
	createSem chan struct{}
	dropSem   chan struct{}
	gcMu      sync.Mutex // one GC at a time
	// claimMu orders this process's claims of catalog rows (an UPDATE that marks them
	// dropping, owned by this pool) against reclaim: a claim holds it shared from its
	// UPDATE until it has marked the names busy, reclaim holds it exclusively while it
	// reads busy and runs its own UPDATE, so it never takes a row just claimed here
	// as a leftover of this pool's (claimNames).
	claimMu sync.RWMutex

	refillFailing bool // the last refill scan failed; owned by the refill loop
	budget        budget
	counters      counters
	peers         atomic.Int64 // other pools alive on the catalog, at the last heartbeat (poll.go)

	ctx    context.Context // background work; cancelled by Close
	cancel context.CancelFunc
	// dropCtx: background drops; cancelled by Close once they are done, or at its
	// drain bound (drain.go)
	dropCtx    context.Context
	dropCancel context.CancelFunc
	closing    chan struct{}
	wg         sync.WaitGroup
	once       sync.Once

	mu     sync.Mutex
	closed bool
	gens   map[string]*generation // built templates, by hash
	builds map[string]*buildCall  // builds in flight, by hash
	leases map[string]*Lease      // leases out, by clone
	kept   map[string]io.Closer   // resources kept in ready clones, by clone
	// pristine holds the evidence read when a clone this process made became ready,
	// by clone, until it is dropped or leased in tx mode (reuse.go).
	pristine map[string]evidence
	noCounts sync.Once      // logs once that track_counts is off
	busy     map[string]int // clones being created or dropped by this process (marks)

	// parked: tx clones between leases, still leased in the catalog; ending: tx
	// leases whose holder is resetting them for the next lease (parked.go)
	parked map[*generation][]parkedClone
	ending map[*generation]*endings
}

// template is one configured template name.
type template struct {
	name string
	mig  Migrator
	cur  atomic.Pointer[generation] // the build its files hashed to last

	mu      sync.Mutex
	changed chan struct{} // closed when cur changes; nil until someone waits
}

// New connects to the upstream, sets up the catalog and starts the background work
// (refill, reclaim, GC, the first run of which happens at once). Templates are built on
// the first Acquire that needs them.
func New(ctx context.Context, cfg Config) (*Pool, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	base, err := pgx.ParseConfig(cfg.ConnString)
	if err != nil {
		return nil, fmt.Errorf("pool: ConnString: %w", err)
	}
	p := &Pool{
		cfg: cfg, log: cfg.Logger, owner: newOwnerID(), base: base, addr: address(&base.Config),
		templates: make(map[string]*template), kick: make(chan struct{}, 1),
		createSem: make(chan struct{}, cfg.RefillParallelism), dropSem: make(chan struct{}, cfg.RefillParallelism),
		closing: make(chan struct{}), gens: make(map[string]*generation), builds: make(map[string]*buildCall),
		leases: make(map[string]*Lease), kept: make(map[string]io.Closer), busy: make(map[string]int),
		pristine: make(map[string]evidence),
	}
	for name, m := range cfg.Templates {
		p.templates[name] = &template{name: name, mig: m}
		p.names = append(p.names, name)
	}
	slices.Sort(p.names)
	if err := p.connect(ctx); err != nil {
		p.closeConns()
		return nil, err
	}
	p.ctx, p.cancel = context.WithCancel(context.Background())
	p.dropCtx, p.dropCancel = context.WithCancel(context.Background())
	p.wg.Add(3)
	go p.refillLoop()
	go p.maintainLoop()
	go p.heartbeatLoop()
	p.log.Info("pool ready", zap.String("upstream", p.addr), zap.String("catalog", cfg.CatalogDB),
		zap.Int("server_major", p.major), zap.Int64("owner", p.owner), zap.Strings("templates", p.names))
	return p, nil
}

// connect opens the catalog, takes the owner lock and registers the owner.
func (p *Pool) connect(ctx context.Context) error {
	if err := p.ensureCatalogDB(ctx); err != nil {
		return err
	}
	if p.cfg.CloneStrategy != "" && p.major < 15 {
		return fmt.Errorf("pool: CloneStrategy %s needs PostgreSQL 15 or later (the upstream is %d)", p.cfg.CloneStrategy, p.major)
	}
	p.watchPeers(p.base)
	var err error
	if p.cat, err = p.newPgxPool(int32(4 + p.cfg.RefillParallelism)); err != nil {
		return err
	}
	if p.admin, err = p.newPgxPool(int32(2*p.cfg.RefillParallelism + 2)); err != nil {
		return err
	}
	if p.lockC, err = p.lockOwner(ctx); err != nil {
		return err
	}
	if err := p.setupCatalog(ctx); err != nil {
		return err
	}
	if err := p.learnBudget(ctx); err != nil {
		return err
	}
	if err := p.register(ctx, p.lockC); err != nil {
		return err
	}
	p.countPeers(ctx)
	return nil
}

func (p *Pool) newPgxPool(maxConns int32) (*pgxpool.Pool, error) {
	pc, err := pgxpool.ParseConfig(p.cfg.ConnString)
	if err != nil {
		return nil, fmt.Errorf("pool: ConnString: %w", err)
	}
	pc.ConnConfig = p.catalogConfig()
	pc.MaxConns = maxConns
	pc.MaxConnIdleTime = time.Minute
	return pgxpool.NewWithConfig(context.Background(), pc)
}

// newOwnerID returns a random positive 62-bit id.
func newOwnerID() int64 {
	var b [8]byte
	_, _ = crand.Read(b[:])
	id := int64(binary.BigEndian.Uint64(b[:]) >> 2)
	if id == 0 {
		id = 1
	}
	return id
}

// Acquire leases a clone of the template that database selects: the template of that
// name, else the default template. It builds the template first when its migrations
// changed, and waits up to AcquireTimeout for a ready clone.
func (p *Pool) Acquire(ctx context.Context, database string, mode leasemode.Mode) (*Lease, error) {
	switch mode {
	case "":
		mode = leasemode.DB
	case leasemode.DB, leasemode.Tx:
	default:
		return nil, pgerr.New(pgerrcode.InvalidParameterValue, fmt.Sprintf("invalid lease mode %q: want %q or %q", mode, leasemode.DB, leasemode.Tx))
	}
	tpl, err := p.resolve(database)
	if err != nil {
		return nil, err
	}
	// One deadline for the whole wait, whichever templates it waits on.
	timer := time.NewTimer(p.cfg.AcquireTimeout)
	defer timer.Stop()
	for attempt := 0; ; {
		if p.isClosed() {
			return nil, ErrClosed
		}
		gen, err := p.generationFor(ctx, tpl)
		if err != nil {
			return nil, err
		}
		gen.lastUsed.Store(time.Now().UnixNano())
		l, err := p.claimOrWait(ctx, tpl, gen, mode, timer.C)
		switch {
		case errors.Is(err, errTemplateChanged):
			continue // the migrations changed while waiting: wait on the new template
		case errors.Is(err, errTemplateGone) && attempt < 2:
			attempt++
			continue // dropped under us (GC elsewhere); build it again
		}
		return l, err
	}
}

// resolve maps the database a client asked for to a template.
func (p *Pool) resolve(database string) (*template, error) {
	if t, ok := p.templates[database]; ok {
		return t, nil
	}
	if t, ok := p.templates[""]; ok {
		return t, nil
	}
	known := make([]string, len(p.names))
	for i, n := range p.names {
		known[i] = strconv.Quote(n)
	}
	return nil, pgerr.New(pgerrcode.InvalidCatalogName, fmt.Sprintf("no template %q (known templates: %s; there is no default template)",
		database, strings.Join(known, ", ")))
}

func (p *Pool) isClosed() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.closed
}

// kickRefill wakes the refill loop without blocking.
func (p *Pool) kickRefill() {
	select {
	case p.kick <- struct{}{}:
	default:
	}
}

// goBackground runs f as a goroutine Close joins, unless Close has begun.
func (p *Pool) goBackground(f func()) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return false
	}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		f()
	}()
	return true
}

// Close stops the background work and waits for it (finishing, within drainTimeout,
// the drops already queued: drain.go), drops the clones of leases still out (nobody will release them now), closes kept resources and releases the owner lock.
// Ready clones stay for the next process. Close is idempotent.
func (p *Pool) Close() error {
	p.once.Do(func() {
		p.mu.Lock()
		p.closed = true
		close(p.closing)
		p.mu.Unlock()
		p.cancel()
		p.drain()

		ctx, cancel := context.WithTimeout(context.Background(), closeTimeout)
		defer cancel()
		p.mu.Lock()
		var out []string
		for name, l := range p.leases {
			l.markReleased()
			out = append(out, name)
		}
		p.leases = map[string]*Lease{}
		kept := p.kept
		p.kept = map[string]io.Closer{}
		p.mu.Unlock()
		p.unparkAll(ctx)
		for _, c := range kept {
			c.Close()
		}
		for _, name := range out {
			if err := p.dropClone(ctx, name); err != nil {
				p.log.Warn("drop clone of a lease still out at close", zap.String("clone", name), zap.Error(err))
			}
		}
		if _, err := p.cat.Exec(ctx, `UPDATE migrated_dbs SET kept_by = NULL WHERE kept_by = $1`, p.owner); err != nil {
			p.log.Warn("forget kept connections at close", zap.Error(err))
		}
		if _, err := p.cat.Exec(ctx, `DELETE FROM owners WHERE id = $1`, p.owner); err != nil {
			p.log.Warn("unregister pool at close", zap.Error(err))
		}
		p.closeConns()
		p.log.Info("pool closed", zap.Int("leases_cut", len(out)))
	})
	return nil
}

func (p *Pool) closeConns() {
	if p.lockC != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		p.lockC.Close(ctx)
		cancel()
	}
	if p.cat != nil {
		p.cat.Close()
	}
	if p.admin != nil {
		p.admin.Close()
	}
}
