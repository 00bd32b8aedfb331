// Package pool keeps warm, fully migrated clones of template databases on a PostgreSQL
// upstream and leases them out: the databases side of pgtestproxy. It knows nothing of
// the wire protocol; the proxy reaches it through an adapter in cmd, and migrations
// reach it through the Migrator interface it declares.
//
// State lives on the upstream, in a catalog database shared by every pool that uses
// the same upstream and CatalogDB: template_dbs (one row per template database, named
// from its migrations' hash), migrated_dbs (one row per clone: creating, ready, leased
// or dropping, with its owner, lease mode and timings) and owners (pool instances, with
// a heartbeat). A template is built once across all processes under an advisory lock
// and sealed (IS_TEMPLATE, ALLOW_CONNECTIONS false) only after every migration
// succeeded; the faster CREATE DATABASE strategy is measured once per template. Each
// template keeps PoolSize ready clones, refilled in the background; Acquire claims one
// with a single UPDATE … FOR UPDATE SKIP LOCKED, so two processes never win the same
// clone, and waits for the refill only when none is ready. A waiting Acquire follows
// its template when the migrations change (another Acquire built the new one, or its
// own rehash every 500ms noticed), unless a clone of the old one arrives first. A
// db-mode lease's clone is judged after it is released (below) and goes back to the
// pool or is dropped; a tx-mode lease's clone goes
// back to the pool when the caller reports it clean, together with the backend
// connection the caller kept in it; db-mode leases never take such a clone (the refill
// builds for db-mode waiters among the clones without one), so tx mode keeps its
// reused clones and backends under mixed load. Up to PoolSize such clones of a template
// are parked in the process instead (parked.go): their catalog rows stay leased by this
// pool, so no other process can take them, and the process's next tx-mode Acquire takes
// one without a catalog round trip; a tx-mode Acquire that finds none parked while a
// lease of the template is being reset (Lease.Ending) waits up to 50 ms for it.
//
// Reuse of unchanged db-mode clones (reuse.go, evidence.go). When a clone this pool made
// becomes ready, the pool records the server's evidence of its state: the clone's
// row-change counters in pg_stat_database (which count catalog changes too), its
// stats_reset, pg_stat_bgwriter's stats_reset and the server's start (statistics lost
// or reset), every sequence's state and the large objects (which change without a row
// counter moving), the tables' vacuum and analyze counts, and what shared catalogs hold
// of it (its pg_database row, settings, comment, labels, subscriptions, replication
// slots, prepared transactions). The in-clone part is read once per template, through
// its first clone's warming connection; the rest per clone. When a db-mode lease is
// released clean, a background goroutine waits (up to 5s) until no backend is left in
// the clone (a backend flushes its statistics before it leaves pg_stat_activity),
// reads the evidence again and, when it is equal and the template still current, marks
// the clone ready; otherwise, or on any error, it drops it. A clone with no evidence (made
// by another process, used by a tx-mode lease, its reading failed) is dropped. Reuse
// needs PostgreSQL 15+ (shared-memory statistics) and track_counts; NoReuse turns it off.
// Counters count ClonesReused and ClonesNotReused. Before any clone is dropped, the
// subscriptions a lease left in it are disabled, detached from their slot and dropped
// (DROP DATABASE refuses a database with a subscription, even WITH (FORCE)).
//
// Incremental templates. A Migrator that is also a PrefixMigrator (the ordered layouts of
// package migrations, with their seed files) gives the hash of every prefix of its
// steps. The template for steps 1..N is then built by cloning the longest prefix
// template that is ready (1..k) and applying only k+1..N; on the way the build seals
// the prefixes that end at the last two versioned migrations, so adding a migration or
// editing the newest one later costs one clone plus that file. A prefix template is an
// ordinary template of the catalog (named from its own hash, which is the hash of a
// directory holding only those files; built once under the same advisory lock; dropped
// by GC after TTL) with prefix set; GC also drops all but the keptPrefixes (4) most
// recently used prefix templates per template name. The base a template was cloned from
// and how many steps it held are recorded (template_dbs.base, base_steps) and shown in
// TemplateStats. A base that vanished before it could be cloned means a build from an
// empty database.
//
// Builds ahead and their progress. A template is built when an Acquire first needs it,
// or ahead of that by Warm (every template, in the background, errors logged and not
// kept) or Prepare (one template, waiting for it); a build also starts its warm pool's
// refill. While the migrations are applied, package migrations reports each file as it
// begins through the build's context (internal/progress); the pool logs it at debug
// (n, total, file, elapsed), logs where the build is every ProgressInterval (5s) at
// info, and tells Config.Progress.
//
// Catalog versions. Each catalog schema version keeps its tables in a schema of its own
// in the catalog database (catalog_v2 for CatalogVersion 2) and puts its number in the
// name of every database it creates (<prefix>v2_…); it reads, claims and drops only
// rows of its own schema, and drops only databases with its own name prefix. So pools
// of different versions (branches, CI runners on other releases) share one upstream
// and never drop each other's databases: a version change makes a new, empty catalog
// next to the old one instead of rebuilding it. A catalog schema whose recorded version
// is not the binary's is reported (New fails, naming it) and left alone; other versions
// found in the catalog database are logged. This design was chosen over an additive
// migration of one shared catalog because no version can then ever drop a database
// another version's live owner uses, whatever either version's code does. Version 1
// (before versioning) kept its tables in the public schema and rebuilt them on any
// version mismatch; this version never touches the public schema, so a version 1 proxy
// on the same upstream keeps its catalog too.
//
// Liveness. Every pool holds a session advisory lock on its owner id and records a
// heartbeat in owners every HeartbeatInterval (2s) through the connection holding it;
// when that connection broke (an upstream restart, a terminated backend) the next
// heartbeat reconnects and re-takes the lock, retrying every 200ms until the upstream
// answers. An owner is dead only when its lock is gone AND the later of its last
// heartbeat and the upstream's start (pg_postmaster_start_time) is older than its
// ReclaimGrace (30s, stored in its owners row, so each owner is judged by its own
// setting); a restart of any length thus gives every owner a full grace period to come
// back. Leases of dead owners are reclaimed at start-up, every ReclaimInterval and by
// GC, which also drops templates and idle clones unused for TTL. The pool drops only
// databases that are in its catalog and carry its name prefix. A failed drop is retried
// in the background with backoff (100ms up to 5s) until the clone is gone or the pool
// closes; GC reports only what it dropped. Close finishes the drops already queued (a
// trim, released leases, retries) within 15s before it returns, so a clean stop leaves
// no clone dropping for the next GC (drain.go).
//
// Refill. Every template keeps PoolSize clones ready, plus one per waiting Acquire,
// creating RefillParallelism at once (2; dropping as many at once besides). Creations
// queued for waiters who left before they started quit instead. A waiting Acquire is
// woken by every clone this process readies and polls the catalog every 50ms only
// while another pool is alive on it, else every second (poll.go).
//
// Connection budget. New reads the upstream's max_connections minus
// superuser_reserved_connections (and reserved_connections on 16+). Acquire counts the
// connections in use (every client backend, plus one per leased clone with none yet)
// and refuses, with SQLSTATE 53300 naming the limits and what to change, a lease that
// would leave fewer than ConnectionReserve free for the pool's own work (refill,
// drops, catalog, builds). The count is refreshed every refill tick; the leases granted
// since are added to it, and only within twice the reserve of the limit is the upstream
// asked on each Acquire.
//
// Vanished peers. Every connection made from the pool's settings (its own, and the ones
// a lease's ConnConfig makes) has TCP keepalives on both ends and, on PostgreSQL 14+,
// client_connection_check_interval 2s, so the backends of a killed proxy stop within
// seconds rather than running their query to its end.
//
// Observability. Stats and Leases read the catalog (every pool sharing it); Counters
// are this pool's own: clones made, dropped and reclaimed, templates built, and
// clone and build durations in internal/histo histograms, which the admin console and
// the Prometheus collector in cmd/pgtestproxy both read. Reload hashes every
// template's migrations again and reports which changed; the next Acquire of a changed
// template builds it, as it would have noticed by itself.
package pool
