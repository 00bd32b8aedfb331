// Package pool keeps warm, fully migrated clones of template databases on a PostgreSQL
// upstream and leases them out: the databases side of pgtestproxy. It knows nothing of
// the wire protocol; the proxy reaches it through an adapter in cmd, and migrations
// reach it through the Migrator interface it declares.
//
// State lives on the upstream, in a catalog database shared by every pool that uses
// the same upstream and CatalogDB: template_dbs (one row per template database, named
// from its migrations' hash), migrated_dbs (one row per clone: creating, ready, leased
// or dropping, with its owner, lease mode and timings) and owners (live pool
// instances). A template is built once across all processes under an advisory lock and
// sealed (IS_TEMPLATE, ALLOW_CONNECTIONS false) only after every migration succeeded;
// the faster CREATE DATABASE strategy is measured once per template. Each template keeps
// PoolSize ready clones, refilled in the background; Acquire claims one with a single
// UPDATE … FOR UPDATE SKIP LOCKED, so two processes never win the same clone, and waits
// for the refill only when none is ready. A db-mode lease's clone is dropped after it is
// released; a tx-mode lease's clone goes back to the pool when the caller reports it
// clean, together with the backend connection the caller kept in it. Every pool holds a
// session advisory lock on its owner id while alive; leases of owners whose lock is gone
// are reclaimed at start-up, periodically and by GC, which also drops templates and idle
// clones unused for TTL. The pool drops only databases that are in its catalog and carry
// its prefix.
package pool
