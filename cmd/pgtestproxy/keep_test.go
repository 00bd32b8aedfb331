package main

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgtestproxy/pgtestproxy/internal/testpg"
)

// The real pool keeps a tx-mode lease's backend with its clone: with one clone, two
// tx-mode connections one after the other run on the same clone and the same backend
// process. The second waits for the clone, so it comes only after the first lease
// went back to the pool.
func TestTxLeaseReusesKeptBackend(t *testing.T) {
	addr := serve(t, "--upstream", testpg.AdminURL(t), "--migrations", writeMigrations(t),
		"--mode", "tx", "--pool-size", "1", "--max-clones", "1")
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	type seen struct {
		db  string
		pid uint32
	}
	var got []seen
	for range 2 {
		c, err := pgx.Connect(ctx, "postgres://someone@"+addr+"/app?sslmode=disable")
		if err != nil {
			t.Fatal(err)
		}
		var s seen
		if err := c.QueryRow(ctx, "SELECT current_database(), pg_backend_pid()").Scan(&s.db, &s.pid); err != nil {
			t.Fatal(err)
		}
		if err := c.Close(ctx); err != nil {
			t.Fatal(err)
		}
		got = append(got, s)
	}
	if got[0].db != got[1].db {
		t.Fatalf("the two tx leases got clones %s and %s, want the one clone twice", got[0].db, got[1].db)
	}
	if got[0].pid != got[1].pid {
		t.Fatalf("clone %s: backend pid %d, then %d: the kept backend was not reused", got[0].db, got[0].pid, got[1].pid)
	}
}
