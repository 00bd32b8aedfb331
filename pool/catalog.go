package pool

import (
	"context"
	"fmt"
	"github.com/jackc/pgerrcode"
	"github.com/pgtestproxy/pgtestproxy/internal/pgerr"
	"strings"

	"github.com/jackc/pgx/v5"
	"go.uber.org/zap"
)

// CatalogVersion is the catalog's schema version. Each version keeps its tables in a
// schema of its own in the catalog database (catalogSchema) and puts its number in the
// name of every database it creates (namePrefix), so pools of different versions share
// one upstream without ever seeing, let alone dropping, each other's databases. It is
// also part of every template's hash. Version 1 (before versioning) kept its tables in
// the public schema; this version never touches them.
const CatalogVersion = 2

// catalogSchema is the schema holding the catalog of the given version.
func catalogSchema(version int) string { return fmt.Sprintf("catalog_v%d", version) }

// Advisory lock keys. Owner locks use the single-bigint form (objsubid 1 in pg_locks);
// everything else uses the two-int4 form (objsubid 2) under lockClass, so the two can
// never collide.
const (
	lockClass     = 0x70677470 // "pgtp": pg_advisory_lock(lockClass, hashtext(template))
	lockClassPool = 0x70677471 // pg_advisory_lock(lockClassPool, lockSetup|lockCap)
	lockSetup     = 1
	lockCap       = 2
)

// catalogDDL creates the catalog from nothing.
func catalogDDL(version int) []string {
	return []string{
		`CREATE TABLE schema_version (version int NOT NULL)`,
		fmt.Sprintf(`INSERT INTO schema_version VALUES (%d)`, version),
		// Live and recently live pool instances, for the admin console and GC.
		`CREATE TABLE owners (
		id         bigint PRIMARY KEY,  -- the session advisory lock key the pool holds
		pid        int NOT NULL,
		host       text NOT NULL,
		started_at timestamptz NOT NULL DEFAULT now(),
		heartbeat  timestamptz NOT NULL DEFAULT now(), -- last sign of life
		grace      interval NOT NULL                   -- how long after it the pool may be deemed dead
	)`,
		`CREATE TABLE template_dbs (
		datname      text PRIMARY KEY,                -- prefix || 'tpl_' || hash[:24]
		hash         text NOT NULL,
		template     text NOT NULL,                   -- name of the template that built it ('' = default)
		state        text NOT NULL CHECK (state IN ('building', 'ready')),
		builder      bigint NOT NULL,                 -- owner id of the builder
		created_at   timestamptz NOT NULL DEFAULT now(),
		built_at     timestamptz,
		build_ms     double precision,                -- create + migrate + seal
		strategy     text NOT NULL DEFAULT '',         -- chosen CREATE DATABASE strategy ('' = server default)
		wal_log_ms   double precision,                -- measured clone time with STRATEGY WAL_LOG
		file_copy_ms double precision,                -- measured clone time with STRATEGY FILE_COPY
		last_used    timestamptz NOT NULL DEFAULT now()
	)`,
		baseColumns,
		`CREATE TABLE migrated_dbs (
		datname        text PRIMARY KEY,               -- prefix || hash[:8] || '_' || random
		template_db    text NOT NULL,                  -- template_dbs.datname it was cloned from
		state          text NOT NULL CHECK (state IN ('creating', 'ready', 'leased', 'dropping')),
		owner          bigint NOT NULL,                -- the pool creating, leasing or dropping it
		kept_by        bigint,                         -- owner holding a kept tx backend in it (ready only)
		mode           text,                           -- lease mode while leased: 'db' or 'tx'
		lease_template text,                           -- template name the lease asked for
		strategy       text NOT NULL DEFAULT '',
		clone_ms       double precision,
		created_at     timestamptz NOT NULL DEFAULT now(),
		leased_at      timestamptz,
		last_used      timestamptz NOT NULL DEFAULT now()
	)`,
		`CREATE INDEX migrated_dbs_template_state ON migrated_dbs (template_db, state)`,
	}
}

// baseColumns adds what incremental builds record to template_dbs. It is additive and
// idempotent, so a catalog made before them gains them in place: a pool that does not
// know them never reads them, and they hold nothing it could drop by.
const baseColumns = `ALTER TABLE template_dbs
	ADD COLUMN IF NOT EXISTS base text NOT NULL DEFAULT '',       -- template database it was cloned from ('' = built from an empty one)
	ADD COLUMN IF NOT EXISTS base_steps int NOT NULL DEFAULT 0,   -- migration steps that base held
	ADD COLUMN IF NOT EXISTS prefix boolean NOT NULL DEFAULT false -- a prefix kept as a base for later builds`

// keptPrefixes bounds the prefix templates GC keeps per template name (beyond TTL): the
// most recently used ones, enough for the last two builds' bases.
const keptPrefixes = 4

// surplusPrefix is an SQL condition true for a ready prefix template beyond the
// keptPrefixes most recently used of its template name.
var surplusPrefix = fmt.Sprintf(`datname IN (SELECT r.datname FROM (SELECT datname,
		row_number() OVER (PARTITION BY template ORDER BY last_used DESC) AS n
		FROM template_dbs WHERE prefix AND state = 'ready') r WHERE r.n > %d)`, keptPrefixes)

// ownerLocked is an SQL condition true when the owner id in %[1]s holds its lock.
// pg_locks is readable without superuser.
const ownerLocked = `EXISTS (SELECT 1 FROM pg_locks l
	WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1
	  AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
	  AND ((l.classid::int8 << 32) | l.objid::int8) = %[1]s)`

// ownerRecent is an SQL condition true when the owner id in %[1]s showed a sign of life
// within its grace period: a heartbeat, or the upstream's own start (a restart breaks
// every owner's lock at once, and a live pool needs a moment to take it again).
const ownerRecent = `EXISTS (SELECT 1 FROM owners h WHERE h.id = %[1]s
	AND greatest(h.heartbeat, pg_postmaster_start_time()) > now() - h.grace)`

// alive is an SQL condition true while the owner id in col may still be alive: it holds
// its lock, or its heartbeat is within its grace period. Only an owner that fails both
// is dead, and only a dead owner's clones are ever reclaimed.
func alive(col string) string {
	return "(" + fmt.Sprintf(ownerLocked, col) + " OR " + fmt.Sprintf(ownerRecent, col) + ")"
}

// ensureCatalogDB creates the catalog database when it is missing, and learns the
// upstream's major version.
func (p *Pool) ensureCatalogDB(ctx context.Context) error {
	c, err := pgx.ConnectConfig(ctx, p.connConfig(p.cfg.CatalogDB))
	if err == nil {
		p.major = serverMajor(c)
		return c.Close(ctx)
	}
	if pgerr.SQLState(err) != pgerrcode.InvalidCatalogName {
		return p.upstreamErr("connect to catalog "+p.cfg.CatalogDB, err)
	}
	admin := p.connConfig("")
	c, err = pgx.ConnectConfig(ctx, admin)
	if err != nil {
		return p.upstreamErr("connect to create catalog "+p.cfg.CatalogDB, err)
	}
	defer c.Close(context.WithoutCancel(ctx))
	p.major = serverMajor(c)
	_, err = c.Exec(ctx, "CREATE DATABASE "+ident(p.cfg.CatalogDB))
	switch pgerr.SQLState(err) {
	case "", pgerrcode.DuplicateDatabase, pgerrcode.UniqueViolation: // created, or another pool created it first
		return nil
	}
	return fmt.Errorf("create catalog database %s: %w", p.cfg.CatalogDB, err)
}

// serverMajor reads the major version from the server_version a server reports at
// start-up ("15.4 (Debian 15.4-1)" → 15; "9.6.24" → 9).
func serverMajor(c *pgx.Conn) int {
	v := c.PgConn().ParameterStatus("server_version")
	n := 0
	for _, r := range v {
		if r < '0' || r > '9' {
			break
		}
		n = 10*n + int(r-'0')
	}
	return n
}

// setupCatalog creates this version's catalog schema and tables when they are missing.
// It runs in one transaction under an advisory lock, so racing pools agree. It never
// drops or alters a catalog: one whose recorded version is not this one (a layout this
// binary cannot use) is reported and left alone. Catalogs of other versions are only
// logged.
func (p *Pool) setupCatalog(ctx context.Context) error {
	schema := catalogSchema(p.cfg.catalogVersion)
	err := pgx.BeginFunc(ctx, p.cat, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1, $2)", lockClassPool, lockSetup); err != nil {
			return err
		}
		var exists bool
		if err := tx.QueryRow(ctx, "SELECT to_regclass($1) IS NOT NULL", schema+".schema_version").Scan(&exists); err != nil {
			return err
		}
		if exists {
			var version int
			err := tx.QueryRow(ctx, "SELECT version FROM "+ident(schema)+".schema_version LIMIT 1").Scan(&version)
			if err == nil && version == p.cfg.catalogVersion {
				_, err := tx.Exec(ctx, baseColumns)
				return err
			}
			if err != nil && err != pgx.ErrNoRows {
				return err
			}
			return pgerr.New(pgerrcode.ObjectNotInPrerequisiteState, fmt.Sprintf(
				"catalog schema %s in database %s records version %d, want %d: this pgtestproxy cannot use it and leaves it alone (drop the schema by hand if nothing uses it)",
				schema, p.cfg.CatalogDB, version, p.cfg.catalogVersion))
		}
		if _, err := tx.Exec(ctx, "CREATE SCHEMA IF NOT EXISTS "+ident(schema)); err != nil {
			return fmt.Errorf("create schema %s: %w", schema, err)
		}
		for _, ddl := range catalogDDL(p.cfg.catalogVersion) {
			if _, err := tx.Exec(ctx, ddl); err != nil {
				return fmt.Errorf("%s: %w", strings.Fields(ddl)[2], err)
			}
		}
		return nil
	})
	if err != nil {
		return p.upstreamErr("set up catalog "+p.cfg.CatalogDB, err)
	}
	p.logOtherVersions(ctx)
	return nil
}

// logOtherVersions says which other catalog versions share the catalog database; their
// tables and databases are left alone.
func (p *Pool) logOtherVersions(ctx context.Context) {
	rows, err := p.cat.Query(ctx, `SELECT substr(nspname, 10)::int FROM pg_namespace
		WHERE nspname ~ '^catalog_v[0-9]{1,6}$' AND nspname <> $1
		UNION ALL SELECT 1 WHERE to_regclass('public.schema_version') IS NOT NULL
		ORDER BY 1`, catalogSchema(p.cfg.catalogVersion))
	versions, err2 := pgx.CollectRows(rows, pgx.RowTo[int])
	if err != nil || err2 != nil || len(versions) == 0 {
		return
	}
	log := p.log.Info
	msg := "other catalog versions share this upstream; their databases are left alone"
	if versions[len(versions)-1] > p.cfg.catalogVersion {
		log = p.log.Warn
		msg = "a newer pgtestproxy shares this upstream; this one cannot use its catalog and leaves it and its databases alone"
	}
	log(msg, zap.String("catalog", p.cfg.CatalogDB), zap.Int("version", p.cfg.catalogVersion), zap.Ints("other_versions", versions))
}

// namePrefix starts the name of every database this pool creates: the configured
// prefix and the catalog version, so a version only ever drops its own.
func (p *Pool) namePrefix() string { return fmt.Sprintf("%sv%d_", p.cfg.Prefix, p.cfg.catalogVersion) }

func ident(name string) string { return pgx.Identifier{name}.Sanitize() }

// connConfig returns the upstream's connection settings pointed at database db ("" =
// the database ConnString names).
func (p *Pool) connConfig(db string) *pgx.ConnConfig {
	c := p.base.Copy()
	if db != "" {
		c.Database = db
	}
	return c
}

// catalogConfig returns the connection settings of the catalog database, with this
// version's schema as the search path.
func (p *Pool) catalogConfig() *pgx.ConnConfig {
	c := p.connConfig(p.cfg.CatalogDB)
	c.RuntimeParams["search_path"] = catalogSchema(p.cfg.catalogVersion)
	// The catalog's commits do not wait for their WAL to reach disk: on an upstream with
	// fsync on, that wait is most of a claim's round trip. What a crash of the server
	// could lose (its last fraction of a second of catalog commits) never matters: every
	// step that makes a lost record harmful is a commit that flushes the WAL before it
	// and so the record too — CREATE and DROP DATABASE force a synchronous commit, as
	// does a client's own commit in the clone it claimed — and a crash ends every lease
	// anyway.
	c.RuntimeParams["synchronous_commit"] = "off"
	return c
}
