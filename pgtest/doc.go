// Package pgtest gives each Go test a private, fully migrated PostgreSQL database from
// a running pgtestproxy, in one line:
//
//	db := pgtest.NewDB(t)      // *sql.DB (pgx's database/sql driver), db mode
//	db := pgtest.NewTx(t)      // *sql.DB, tx mode
//	pool := pgtest.NewPool(t)  // *pgxpool.Pool, db mode (NewTxPool: tx mode)
//
// Every connection a test opens carries a session key made from the test's name, so all
// of them — several handles, a pool's many connections — share one lease: one database
// in db mode, one transaction in tx mode. Another test, or the same test run again, gets
// a fresh one. Handles are closed in t.Cleanup, and the proxy drops or rolls back the
// lease shortly after.
//
// The proxy is found through PGTESTPROXY_URL, which `pgtestproxy run` exports, so the two
// commands are
//
//	pgtestproxy run --migrations ./migrations -- go test ./...
//
// or `pgtestproxy serve --migrations ./migrations` in another terminal and a plain
// `go test ./...` (the default URL is postgres://pgtestproxy@127.0.0.1:6543/test). The
// database name in the URL selects the template (a --migrations NAME=DIR by its name).
// When no proxy answers, the test fails with a message that says how to start one.
package pgtest
