package pool

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"go.uber.org/zap"
)

// Migrator is what the pool needs from a set of migrations (package migrations provides
// them: a directory of any layout, a schema dump, a command, seed files after them).
type Migrator interface {
	// Hash identifies the migrations' current contents for a server of the given major
	// version and a catalog of the given schema version. The pool calls it on every
	// Acquire, so it must be cheap when nothing changed.
	Hash(ctx context.Context, serverMajor, catalogVersion int) (string, error)
	// Migrate applies the migrations that produced hash to the empty database at
	// connString, within ctx. An error that implements SQLState() string reaches the
	// client with that SQLSTATE.
	Migrate(ctx context.Context, connString, hash string) error
	// Describe says how the template is built (layout, directory, command, seed
	// files), for the build log and TemplateStats.
	Describe() string
}

// PrefixMigrator is a Migrator whose migrations apply as an ordered list of steps (the
// files of an ordered layout, then seed files), so that the template of steps 1..N can
// be built by cloning the template of a prefix 1..k and applying only k+1..N. The pool
// checks for it with a type assertion and builds from the longest prefix whose template
// exists; a Migrator without it, or one returning no prefixes, is built from an empty
// database.
type PrefixMigrator interface {
	// PrefixHashes returns, for the migrations that produced hash, the hash of every
	// prefix (prefixes[i] covers steps 1..i+1; the last one is hash itself), each the hash
	// a Migrator holding only those steps would return. ordered counts the leading steps
	// that are versioned migrations; the rest (Flyway repeatables, seed files) only ever
	// come at the end. No prefixes (nil) means the migrations cannot be split.
	PrefixHashes(hash string) (prefixes []string, ordered int, err error)
	// MigrateSteps applies steps from+1..to of the migrations that produced hash to the
	// database at connString, which holds steps 1..from already.
	MigrateSteps(ctx context.Context, connString, hash string, from, to int) error
}

// Config configures a Pool. The zero value of every field but ConnString and Templates
// is a sensible default.
type Config struct {
	// ConnString is the upstream to administer, as a postgres:// URL or key=value DSN,
	// for a role with CREATEDB (superuser is not required). Clones are reached with its
	// credentials. Its database is used only to create CatalogDB when it is missing.
	ConnString string

	// Templates maps a template's name (what a client asks for as its database) to its
	// migrations. The name "" is the default template, used for any name not listed.
	// At least one is required.
	Templates map[string]Migrator

	// CatalogDB is the database on the upstream holding the pool's catalog; every pool
	// sharing one upstream and CatalogDB cooperates. Default "pgtestproxy".
	CatalogDB string

	// Prefix starts the name of every database the pool creates (lower-case letters,
	// digits and _, at most 32 bytes). The pool never drops a database without it.
	// Default "pgtp_".
	Prefix string

	// PoolSize is the number of ready clones kept per template. Default 4.
	PoolSize int

	// MaxClones caps the clones that exist at once across all templates (and all pools
	// sharing the catalog). Default 64.
	MaxClones int

	// ConnectionReserve is how many of the upstream's connections (max_connections
	// minus those reserved for superusers) the pool keeps free for its own work:
	// refill, drops, catalog, builds. Acquire refuses, with SQLSTATE 53300, a lease whose
	// connection would leave fewer free; every lease counts as one connection in use
	// until its client connects, then as its backends. Default 2×RefillParallelism+4.
	ConnectionReserve int

	// AcquireTimeout is how long Acquire waits for a ready clone before failing with
	// SQLSTATE 53300. Default 30s.
	AcquireTimeout time.Duration

	// RefillParallelism bounds how many clones are created (and, separately, dropped)
	// at once. Default DefaultRefillParallelism.
	RefillParallelism int

	// CloneStrategy, "WAL_LOG" or "FILE_COPY", is the CREATE DATABASE strategy of
	// every clone (PostgreSQL 15+). "" (the default) times both on each new template
	// and uses the faster: the measure is of idle clones at build time, and a server
	// whose checkpoints are dear (fsync on a slow disk) or whose WAL is (a large
	// template) may be better served by the one it did not pick.
	CloneStrategy string

	// TTL is how long a template or an idle clone may go unused before GC drops it.
	// Default 24h.
	TTL time.Duration

	// ReclaimInterval is how often the pool reclaims leases of dead processes and runs
	// GC in the background. Default 1m.
	ReclaimInterval time.Duration

	// BuildTimeout bounds one template build (create, migrate, seal, measure).
	// Default 10m.
	BuildTimeout time.Duration

	// HeartbeatInterval is how often the pool records in the catalog that it is alive
	// (and checks its owner lock, re-taking it at once when the connection holding it
	// broke, e.g. after an upstream restart). Default 2s.
	HeartbeatInterval time.Duration

	// ReclaimGrace is how long after this pool's last heartbeat (or after the upstream
	// last started, whichever is later) other pools must wait before they may reclaim
	// its clones, once its owner lock is gone. It is stored with the pool's owner row,
	// so every pool judges this one by this pool's own setting. Default 30s; at least
	// three HeartbeatIntervals.
	ReclaimGrace time.Duration

	// ProgressInterval is how often a template build still running logs where it is
	// (which migration, how long it has taken). Default 5s.
	ProgressInterval time.Duration

	// Progress, when set, is told where each template build is: when it starts, as
	// each migration begins, and when it ends. It is called from the building
	// goroutine and must not block.
	Progress func(BuildProgress)

	// NoStartupGC skips the GC run New starts in the background, for a caller that
	// runs GC itself and wants its report (the `gc` command). Default false.
	NoStartupGC bool

	// NoReuse drops every db-mode clone after its lease. By default a clone this pool
	// made goes back to the ready pool when the server's evidence shows the lease left
	// it exactly as cloned (row-change counters, sequences, large objects, vacuum and
	// analyze counts, the database's shared-catalog state; see evidence.go); any doubt
	// drops it. Reuse needs PostgreSQL 15+ with track_counts on; elsewhere every clone
	// is dropped.
	NoReuse bool

	// Logger receives the pool's logs. Default zap.NewNop().
	Logger *zap.Logger

	// catalogVersion overrides CatalogVersion, for tests of several versions sharing
	// one upstream. Zero means CatalogVersion.
	catalogVersion int

	// trimIdle overrides TrimIdle, for tests. Zero means TrimIdle.
	trimIdle time.Duration
}

// TrimIdle is how long a ready clone beyond PoolSize must have gone unused before the
// refill trims it. Ready clones are shared by every pool on the upstream, and each
// counts only its own waiters: without it, one pool dropped the clones another had just
// made for its waiting clients (seen with three proxies on one server: one made 13
// clones and dropped 24), and a pool its own, made for waiters who then got another.
const TrimIdle = 5 * time.Second

// DefaultRefillParallelism is RefillParallelism's default.
const DefaultRefillParallelism = 2

var prefixRE = regexp.MustCompile(`^[a-z_][a-z0-9_]{0,31}$`)

// withDefaults returns c with zero fields set to their defaults.
func (c Config) withDefaults() Config {
	set := func(v *time.Duration, d time.Duration) {
		if *v == 0 {
			*v = d
		}
	}
	if c.CatalogDB == "" {
		c.CatalogDB = "pgtestproxy"
	}
	if c.Prefix == "" {
		c.Prefix = "pgtp_"
	}
	if c.PoolSize == 0 {
		c.PoolSize = 4
	}
	if c.MaxClones == 0 {
		c.MaxClones = 64
	}
	if c.RefillParallelism == 0 {
		c.RefillParallelism = DefaultRefillParallelism
	}
	if c.ConnectionReserve == 0 {
		c.ConnectionReserve = 2*c.RefillParallelism + 4
	}
	set(&c.AcquireTimeout, 30*time.Second)
	set(&c.TTL, 24*time.Hour)
	set(&c.ReclaimInterval, time.Minute)
	set(&c.BuildTimeout, 10*time.Minute)
	set(&c.HeartbeatInterval, 2*time.Second)
	set(&c.ReclaimGrace, 30*time.Second)
	set(&c.ProgressInterval, 5*time.Second)
	if c.catalogVersion == 0 {
		c.catalogVersion = CatalogVersion
	}
	set(&c.trimIdle, TrimIdle)
	if c.Logger == nil {
		c.Logger = zap.NewNop()
	}
	return c
}

// Validate reports the first problem with c (after defaults are applied).
func (c Config) Validate() error {
	c = c.withDefaults()
	if _, err := pgconn.ParseConfig(c.ConnString); err != nil {
		return fmt.Errorf("pool: ConnString: %w", err)
	}
	if len(c.Templates) == 0 {
		return errors.New("pool: Templates: at least one template is required")
	}
	for name, m := range c.Templates {
		if m == nil {
			return fmt.Errorf("pool: Templates[%q] is nil", name)
		}
	}
	if !prefixRE.MatchString(c.Prefix) {
		return fmt.Errorf("pool: Prefix %q: want 1-32 lower-case letters, digits or _, not starting with a digit", c.Prefix)
	}
	if len(c.CatalogDB) > 63 {
		return fmt.Errorf("pool: CatalogDB %q is longer than 63 bytes", c.CatalogDB)
	}
	switch {
	case c.PoolSize < 0:
		return fmt.Errorf("pool: PoolSize %d is negative", c.PoolSize)
	case c.MaxClones < 1:
		return fmt.Errorf("pool: MaxClones %d: want at least 1", c.MaxClones)
	case c.ConnectionReserve < 0:
		return fmt.Errorf("pool: ConnectionReserve %d is negative", c.ConnectionReserve)
	case c.RefillParallelism < 1:
		return fmt.Errorf("pool: RefillParallelism %d: want at least 1", c.RefillParallelism)
	case c.AcquireTimeout < 0, c.TTL < 0, c.ReclaimInterval < 0, c.BuildTimeout < 0, c.HeartbeatInterval < 0:
		return errors.New("pool: durations must not be negative")
	case c.CloneStrategy != "" && c.CloneStrategy != "WAL_LOG" && c.CloneStrategy != "FILE_COPY":
		return fmt.Errorf("pool: CloneStrategy %q: want WAL_LOG, FILE_COPY or empty", c.CloneStrategy)
	case c.ReclaimGrace < 3*c.HeartbeatInterval:
		return fmt.Errorf("pool: ReclaimGrace %v: want at least three HeartbeatIntervals (%v)", c.ReclaimGrace, 3*c.HeartbeatInterval)
	}
	return nil
}
