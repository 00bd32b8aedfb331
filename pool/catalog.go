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

// CatalogVersion is the catalog's schema version. A catalog of another version is
// rebuilt rather than migrated; it is also part of every template's hash, so templates
// built for another catalog version are never reused.
const CatalogVersion = 1

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
var catalogDDL = []string{
	`CREATE TABLE schema_version (version int NOT NULL)`,
	fmt.Sprintf(`INSERT INTO schema_version VALUES (%d)`, CatalogVersion),
	// Live and recently live pool instances, for the admin console and GC.
	`CREATE TABLE owners (
		id         bigint PRIMARY KEY,  -- the session advisory lock key the pool holds
		pid        int NOT NULL,
		host       text NOT NULL,
		started_at timestamptz NOT NULL DEFAULT now()
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

// ownerAlive is an SQL condition true when the owner id in %s holds its lock, i.e. its
// pool is alive. pg_locks is readable without superuser.
const ownerAlive = `EXISTS (SELECT 1 FROM pg_locks l
	WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1
	  AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
	  AND ((l.classid::int8 << 32) | l.objid::int8) = %s)`

func alive(col string) string { return fmt.Sprintf(ownerAlive, col) }

// ensureCatalogDB creates the catalog database when it is missing.
func (p *Pool) ensureCatalogDB(ctx context.Context) error {
	c, err := pgx.ConnectConfig(ctx, p.connConfig(p.cfg.CatalogDB))
	if err == nil {
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
	_, err = c.Exec(ctx, "CREATE DATABASE "+ident(p.cfg.CatalogDB))
	switch pgerr.SQLState(err) {
	case "", pgerrcode.DuplicateDatabase, pgerrcode.UniqueViolation: // created, or another pool created it first
		return nil
	}
	return fmt.Errorf("create catalog database %s: %w", p.cfg.CatalogDB, err)
}

// setupCatalog creates the catalog tables, or rebuilds them when they are of another
// schema version. It runs in one transaction under an advisory lock, so racing pools
// agree. Databases listed by a replaced catalog are dropped afterwards (those with the
// pool's prefix only).
func (p *Pool) setupCatalog(ctx context.Context) error {
	var orphans []string
	err := pgx.BeginFunc(ctx, p.cat, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1, $2)", lockClassPool, lockSetup); err != nil {
			return err
		}
		var exists bool
		if err := tx.QueryRow(ctx, "SELECT to_regclass('schema_version') IS NOT NULL").Scan(&exists); err != nil {
			return err
		}
		if exists {
			var version int
			err := tx.QueryRow(ctx, "SELECT version FROM schema_version LIMIT 1").Scan(&version)
			if err == nil && version == CatalogVersion {
				return nil
			}
			if err != nil && err != pgx.ErrNoRows {
				return err
			}
			p.log.Warn("catalog has another schema version; rebuilding it",
				zap.String("catalog", p.cfg.CatalogDB), zap.Int("found", version), zap.Int("want", CatalogVersion))
			orphans = oldCatalogDatabases(ctx, tx)
			for _, t := range []string{"schema_version", "owners", "template_dbs", "migrated_dbs"} {
				if _, err := tx.Exec(ctx, "DROP TABLE IF EXISTS "+ident(t)+" CASCADE"); err != nil {
					return err
				}
			}
		}
		for _, ddl := range catalogDDL {
			if _, err := tx.Exec(ctx, ddl); err != nil {
				return fmt.Errorf("%s: %w", strings.Fields(ddl)[2], err)
			}
		}
		return nil
	})
	if err != nil {
		return p.upstreamErr("set up catalog "+p.cfg.CatalogDB, err)
	}
	for _, name := range orphans {
		if err := p.dropDatabase(ctx, name); err != nil {
			p.log.Warn("drop database of the replaced catalog", zap.String("database", name), zap.Error(err))
		}
	}
	return nil
}

// oldCatalogDatabases lists, best effort, the databases a catalog being replaced knew
// about, provided they carry the pool's prefix (checked again when dropping).
func oldCatalogDatabases(ctx context.Context, tx pgx.Tx) []string {
	if _, err := tx.Exec(ctx, "SAVEPOINT old_names"); err != nil {
		return nil
	}
	rows, err := tx.Query(ctx, `SELECT datname FROM migrated_dbs UNION SELECT datname FROM template_dbs`)
	names, err2 := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil || err2 != nil {
		_, _ = tx.Exec(ctx, "ROLLBACK TO SAVEPOINT old_names")
		return nil
	}
	return names
}

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
