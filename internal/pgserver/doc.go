// Package pgserver finds the locally installed PostgreSQL server binaries and runs a
// throwaway-but-persistent server from them: the "embedded" upstream of pgtestproxy and
// the server every test in this repository runs against.
//
// A data directory is initialised once (UTF8, C locale, trust auth, superuser
// "postgres") and reused by later runs, so templates built on it survive restarts. The
// server listens on 127.0.0.1 on a free port with settings meant for tests (fsync,
// synchronous_commit and full_page_writes off; max_connections 300) and keeps its
// Unix socket inside the data directory. By default the data directory lives on a tmpfs
// (/dev/shm) when one has room, because CREATE/DROP DATABASE churn on a disk file
// system slows clones several-fold; see DefaultDataDir.
//
// Several launchers may share one data directory, in one process or many: a start lock
// (flock beside the data directory) serialises start-up, the first launcher starts the
// server and later ones attach to it, and every launcher holds a shared "user" lock
// while it uses the server. Close stops the server only when no other launcher still
// holds it (the last one out turns off the light); a launcher that died releases its
// locks with its process, so a killed run never wedges the next one. A stale
// postmaster.pid left by a killed server is recognised and removed.
//
// When the process runs as root, initdb, pg_ctl and postgres run as the unprivileged
// user "postgres" (or "nobody" when there is none), and the directories are handed to
// that user, because PostgreSQL refuses to run as root.
package pgserver
