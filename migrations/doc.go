// Package migrations turns a golang-migrate directory (NNN_name.up.sql files) into a
// content hash and applies it to a fresh database. It is the only package of pgtestproxy
// that imports golang-migrate, and it satisfies the pool's Migrator interface.
//
// The hash covers what golang-migrate applies upward and nothing else: the relative
// names and contents of the up files (down files never shape a template, so editing one
// does not rebuild it), the upstream's major version and the pool's catalog schema
// version. Renaming, editing, adding or removing an up file changes the hash; touching a
// file's mtime does not. Hash is cheap to call on every lease: it lists the directory and
// recomputes the digest only when the (name, size, mtime) listing changed. Migrate
// applies exactly the bytes that produced a given hash (a snapshot taken by Hash), so a
// template is never named after one version of the files and built from another.
//
// Migrate runs golang-migrate's Up on connections it can close, so it honours the
// caller's deadline even though Up takes no context. A failing migration comes back as
// an *Error naming the file, the line of the failing statement and the upstream's
// SQLSTATE and message. The line comes from the error position PostgreSQL reports; when
// it reports none (division by zero, a unique violation, …) the file's statements are
// replayed one at a time inside a transaction that is rolled back, to find the one that
// fails.
package migrations
