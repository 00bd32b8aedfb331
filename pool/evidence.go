package pool

import (
	"context"
	"errors"
	"strings"

	"github.com/jackc/pgx/v5"
)

// A db-mode clone goes back to the pool only when the server's own evidence shows it
// exactly as it was cloned. The evidence is one text, read once when the clone is made
// ready and again after a lease's backends have all exited; the clone is reused only
// when both reads succeed and are equal. Measured on PostgreSQL 15 (TestReuseDetects
// holds a case for each):
//
//   - pg_stat_database's tup_inserted/updated/deleted of the clone count every row
//     change in it, catalogs included, rolled back or not: INSERT/UPDATE/DELETE, COPY,
//     every DDL (CREATE/ALTER/DROP of tables, indexes, functions, views, types,
//     schemas, policies), TRUNCATE (a new relfilenode), COMMENT, GRANT/REVOKE,
//     ANALYZE of a table with rows (pg_statistic), ALTER SEQUENCE, lo_create/lo_unlink,
//     a temporary table (its catalog rows). xact_commit/rollback are not evidence:
//     every connection moves them. The counters are flushed by a backend before its
//     pg_stat_activity entry goes (shared-memory statistics, PostgreSQL 15+), so they
//     are read only once no backend is left in the clone;
//   - what no row counter sees: every sequence's last_value, log_cnt and is_called
//     (nextval and setval change a sequence in place, a rolled-back nextval included);
//     the vacuum and analyze counts of every table (VACUUM, and ANALYZE of an empty
//     table, change pg_class in place); the large objects' oids;
//   - what lives in shared catalogs, whose changes are counted to no database: the
//     clone's pg_database row (owner, ACL, connection limit, …), its per-database
//     settings (ALTER DATABASE … SET, ALTER ROLE … IN DATABASE … SET), its comment and
//     security labels, its subscriptions, logical replication slots and prepared
//     transactions;
//   - whether the statistics can be trusted: the clone's stats_reset (pg_stat_reset and
//     pg_stat_reset_single_*_counters set it), pg_stat_bgwriter's stats_reset (a crash
//     restart discards every statistic and sets it) and the server's start time; and
//     track_counts, which must be on in the server and in the clone (if it is off, the
//     evidence is incomplete and the clone is dropped).
//
// A session can still turn track_counts off for itself (it is a superuser setting); the
// proxy treats a db-mode session whose bytes name track_counts as not clean, so its
// clone is dropped (proxy's relay).

// errBackendsLeft means a backend stayed in the clone: its statistics are not flushed.
var errBackendsLeft = errors.New("backends still connected")

// errNoTrackCounts means the server does not count row changes: no evidence.
var errNoTrackCounts = errors.New("track_counts is off")

// clusterEvidenceSQL reads, from any database, what the server shows of database $1
// outside it. Every part is a column of one ROW, so a NULL cannot shift another part.
// The pg_database row leaves out datfrozenxid and datminmxid: an autovacuum worker
// visiting the clone advances them (to its tables' oldest relfrozenxid) without a
// lease having done anything, and they are bookkeeping no test sees.
const clusterEvidenceSQL = `SELECT current_setting('track_counts')::bool, ROW(
	(SELECT ROW(s.tup_inserted, s.tup_updated, s.tup_deleted, s.stats_reset) FROM pg_stat_database s WHERE s.datid = d.oid),
	(SELECT stats_reset FROM pg_stat_bgwriter),
	pg_postmaster_start_time(),
	to_jsonb(d) - 'datfrozenxid' - 'datminmxid',
	(SELECT array_agg(ROW(r.setrole, r.setconfig)::text ORDER BY r.setrole) FROM pg_db_role_setting r WHERE r.setdatabase = d.oid),
	(SELECT array_agg(ROW(c.classoid, c.description)::text ORDER BY c.classoid) FROM pg_shdescription c WHERE c.objoid = d.oid),
	(SELECT array_agg(ROW(l.classoid, l.provider, l.label)::text ORDER BY l.classoid, l.provider) FROM pg_shseclabel l WHERE l.objoid = d.oid),
	(SELECT count(*) FROM pg_subscription s WHERE s.subdbid = d.oid),
	(SELECT count(*) FROM pg_replication_slots r WHERE r.datoid = d.oid),
	(SELECT count(*) FROM pg_prepared_xacts x WHERE x.database = d.datname)
)::text FROM pg_database d WHERE d.datname = $1`

// cloneEvidenceSQL reads, in the clone, what no row counter shows, and lists the
// sequences, whose state a second statement reads. The vacuum and analyze counts leave out
// the shared catalogs (pg_database, pg_authid, …): theirs are the whole server's, moved
// by autovacuum after CREATE and DROP DATABASE anywhere, and what they hold of the clone
// is in the cluster part.
const cloneEvidenceSQL = `SELECT current_setting('track_counts')::bool, ROW(
	(SELECT array_agg(oid ORDER BY oid) FROM pg_largeobject_metadata),
	(SELECT sum(pg_stat_get_vacuum_count(oid) + pg_stat_get_autovacuum_count(oid) + pg_stat_get_analyze_count(oid)
		+ pg_stat_get_autoanalyze_count(oid)) FROM pg_class WHERE relkind IN ('r', 't', 'm', 'p') AND NOT relisshared)
)::text, coalesce((SELECT array_agg(ARRAY[n.nspname, c.relname] ORDER BY c.oid)
	FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind = 'S'), '{}')`

// reusable reports whether clones can be judged at all on this server: statistics in
// shared memory (PostgreSQL 15+; before, they travel to a collector by UDP, late or
// never) and reuse not turned off.
func (p *Pool) reusable() bool { return !p.cfg.NoReuse && p.major >= 15 }

// cloneEvidence reads the in-clone part of a clone's evidence on c, a connection to it.
func cloneEvidence(ctx context.Context, c *pgx.Conn) (string, error) {
	var on bool
	var state string
	var seqs [][]string
	if err := c.QueryRow(ctx, cloneEvidenceSQL).Scan(&on, &state, &seqs); err != nil {
		return "", err
	}
	if !on {
		return "", errNoTrackCounts
	}
	if len(seqs) == 0 {
		return state, nil
	}
	// One statement for every sequence: an array of scalar subqueries (an array has no
	// argument limit, unlike concat).
	var b strings.Builder
	b.WriteString("SELECT ARRAY[")
	for i, s := range seqs {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString("(SELECT ROW(last_value, log_cnt, is_called)::text FROM " + pgx.Identifier(s).Sanitize() + ")")
	}
	b.WriteString("]::text")
	var seqState string
	if err := c.QueryRow(ctx, b.String()).Scan(&seqState); err != nil {
		return "", err
	}
	return state + "|" + seqState, nil
}

// clusterEvidence reads the part of a clone's evidence the server shows outside it.
func (p *Pool) clusterEvidence(ctx context.Context, name string) (string, error) {
	var on bool
	var state string
	if err := p.cat.QueryRow(ctx, clusterEvidenceSQL, name).Scan(&on, &state); err != nil {
		return "", err
	}
	if !on {
		return "", errNoTrackCounts
	}
	return state, nil
}

// evidence is a clone's evidence in its two parts: what the server shows of it
// outside it, and what is read in it.
type evidence struct{ inside, outside string }

// unchanged reads a clone's evidence again and reports whether it is want. The cluster
// part comes first, on the catalog's connection: a lease that wrote anything moved its
// row counters, and the clone is judged changed without a connection to it (a backend
// started and ended for every written clone; seen: one of the server's dearest steps of
// a db-mode lease). Only then does it connect to the clone for the in-clone part. Its
// own reads change no counter, so there is no need to wait for its connection to end;
// the caller waits for everyone else's.
func (p *Pool) unchanged(ctx context.Context, name string, want evidence) (bool, error) {
	outside, err := p.clusterEvidence(ctx, name)
	if err != nil || outside != want.outside {
		return false, err
	}
	inside, err := p.insideEvidence(ctx, name)
	return inside == want.inside, err
}

// insideEvidence connects to a clone and reads the in-clone part of its evidence.
func (p *Pool) insideEvidence(ctx context.Context, name string) (string, error) {
	cfg := p.connConfig(name)
	cfg.DefaultQueryExecMode = pgx.QueryExecModeSimpleProtocol // no prepare round trips
	c, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return "", err
	}
	defer c.Close(context.WithoutCancel(ctx))
	return cloneEvidence(ctx, c)
}
