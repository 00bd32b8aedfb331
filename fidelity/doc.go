// Command fidelity is the proxy's fidelity yardstick: it runs pgx's own test suite
// (packages pgx/v5, pgconn, pgtype, stdlib and pgxpool at the version in go.mod)
// directly against PostgreSQL and through pgtestproxy, and reports how many of the
// tests that pass directly also pass through each lease mode, and why the others fail.
//
// It starts its own PostgreSQL 15 with internal/pgserver (on /dev/shm), migrates a
// database named pgx_test with ./migrations (pgx's testsetup, the part that applies to
// one database), builds the proxy from the checkout above and, for each proxy run,
// starts a fresh proxy process on that server with ./migrations as its template. The
// suite runs as `go test -json` with PGX_TEST_DATABASE and PGX_TEST_TCP_CONN_STRING set
// to the run's DSN (the other PGX_TEST_* variables and the libpq PG* variables are
// removed from the environment, so every run gets the same tests):
//
//	direct   postgres://postgres@127.0.0.1:PORT/pgx_test
//	db-key   the proxy, ?mode=db&session=KEY (one session key for the whole suite)
//	tx       the proxy, ?mode=tx (each connection its own lease)
//	tx-key   the proxy, ?mode=tx&session=KEY
//
// Each run is bounded by go test's -timeout; a package that panics or times out runs again
// without the tests that ended and those that hung, so one hang does not hide the rest.
//
// It prints a table of passes per run, then, per proxy run, the tests that pass directly
// but not through the proxy, grouped by a one-line cause (the first line of the
// failure). --json FILE writes every result with the failures' output, after each run;
// --report FILE prints the report of such a file again without measuring. It lives in its
// own module so that pgx's test dependencies stay out of the product's go.mod; `make
// fidelity` runs it and it is not part of `make test`.
package main
