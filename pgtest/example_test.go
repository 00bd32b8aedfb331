package pgtest_test

import (
	"testing"

	"github.com/pgtestproxy/pgtestproxy/pgtest"
)

// Run with: pgtestproxy run --migrations ./migrations -- go test ./...
func ExampleNewDB() {
	var t *testing.T // the test's own t

	db := pgtest.NewDB(t) // a fresh clone of the migrated template, closed when t ends
	if _, err := db.Exec("INSERT INTO users (name) VALUES ($1)", "bob"); err != nil {
		t.Fatal(err)
	}
}

func ExampleNewTxPool() {
	var t *testing.T // the test's own t

	pool := pgtest.NewTxPool(t) // one transaction for all of t's connections, rolled back after t
	var n int
	if err := pool.QueryRow(t.Context(), "SELECT count(*) FROM users").Scan(&n); err != nil {
		t.Fatal(err)
	}
}
