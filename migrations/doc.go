// Package migrations turns what builds a template database into a content hash and
// applies it to a fresh database. It satisfies the pool's Migrator interface in three
// ways, which a Sequence combines with seed files applied after them:
//
//   - A *Dir is a migrations directory in one of the layouts of Formats, detected from
//     its contents whenever its listing changes (or given with OpenFormat):
//     golang-migrate (NNN_name.up.sql, applied by golang-migrate, the only importer of
//     it in pgtestproxy), goose (-- +goose Up/Down, StatementBegin/End, NO TRANSACTION),
//     dbmate (-- migrate:up/down, transaction:false), Flyway (V<version>__ files in
//     numeric version order, then R__ repeatables by name) and Prisma
//     (<timestamp>_<name>/migration.sql). Only up parts are hashed and applied; the
//     tools' own bookkeeping tables are written only by golang-migrate. A *Dir opened
//     on a file is a psql script such as a pg_dump or structure.sql (format Dump):
//     COPY … FROM stdin data goes through the COPY protocol and harmless backslash
//     commands (\restrict, \unrestrict, \echo, \set …) are skipped; others are refused.
//   - A *Command runs a shell command that migrates the database itself, with
//     DATABASE_URL and PG* pointing at it; its hash covers the command and the names
//     and contents of the files it watches.
//   - OpenSeed opens a seed file, applied like a dump after the migrations.
//
// The hash also covers the upstream's major version and the pool's catalog schema
// version. Renaming, editing, adding or removing an up part changes it; touching a
// file's mtime does not. Hash is cheap to call on every lease: it lists (stats) the
// files and re-reads them only when a name, size or mtime changed. Migrate applies
// exactly the bytes that produced a given hash (a snapshot taken by Hash), so a
// template is never named after one version of the files and built from another.
//
// A *Dir of an ordered layout, and a Sequence starting with one, are also a pool
// PrefixMigrator: PrefixHashes gives the hash of each prefix of the files (then of the
// seed files), each the hash a directory holding only those files would have, and
// MigrateSteps applies a range of them to a clone of a prefix's template (for
// golang-migrate, Up from the version the clone's schema_migrations records).
//
// Native layouts run each file's statements on one connection, split by
// internal/sqllex, inside one transaction unless the file asks otherwise or holds a
// statement that cannot run in one; in a transaction a run of plain statements goes
// as one pipeline. golang-migrate's Up runs on connections Migrate can close, so it
// honours the caller's deadline even though Up takes no context. A failing migration
// comes back as an *Error naming the file, the line of the failing statement and the
// upstream's SQLSTATE and message. For golang-migrate the line comes from the error
// position PostgreSQL reports; when it reports none (division by zero, a unique
// violation, …) the file's statements are replayed one at a time inside a transaction
// that is rolled back, to find the one that fails. A failing command's error carries
// its last output lines and the SQLSTATE that output reports (else XX000).
//
// Progress: as each file (or the command) begins, Migrate reports it, with its place
// among the directory's files, to the internal/progress hook in its context, if any.
package migrations
