// Package integration holds end-to-end tests: the real pgtestproxy binary, built once
// per test run, driven the way users drive it (`pgtestproxy run -- CMD`, `serve` with
// SIGTERM) against a real PostgreSQL, through real clients (psql, pgx, database/sql with
// pgx stdlib and lib/pq). recipes_test.go runs the CI recipes of examples/ci the same way
// and checks them against the Dockerfile.
package integration
