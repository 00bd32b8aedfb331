package main

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgtestproxy/pgtestproxy/internal/testpg"
)

// Through the real proxy and pool, with one clone: a db-mode lease that only reads
// leaves its clone for the next one; one that writes, or names track_counts, does not.
// SHOW STATS counts both; --reuse-clean=false drops every clone.
func TestDBModeReusesUnchangedClones(t *testing.T) {
	// Migrations of this test's own (a template no other test's process left clones of,
	// which this process could not judge).
	migrations := writeMigrations(t)
	if err := os.WriteFile(filepath.Join(migrations, "002_reuse.up.sql"), []byte("CREATE TABLE reuse_test ();\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	addr := serve(t, "--upstream", testpg.AdminURL(t), "--migrations", migrations, "--pool-size", "1", "--max-clones", "1")
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	steps := []struct {
		sql        string
		sameAsLast bool // the clone is the one the previous step left
	}{
		{"SELECT count(*) FROM users", false},
		{"INSERT INTO users (name) VALUES ('bob')", true},        // the read-only lease's clone came back
		{"SET track_counts = off; SELECT 1", false},              // the insert's clone was dropped
		{"SELECT count(*) FROM users WHERE name = 'bob'", false}, // and so was that one
		{"SELECT 1", true},
	}
	last := ""
	for i, s := range steps {
		db := leaseOnce(t, ctx, addr, s.sql)
		if (db == last) != s.sameAsLast {
			t.Fatalf("step %d (%s): clone %s after %s, want the same clone %v", i, s.sql, db, last, s.sameAsLast)
		}
		last = db
	}
	// The last lease is judged in the background.
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(20 * time.Millisecond) {
		stats := one(t, consolePgx(t, ctx, addr, "SHOW STATS"), "SHOW STATS")
		if stats["clones_reused"] == "3" && stats["clones_not_reused"] == "2" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("SHOW STATS: clones_reused %q, clones_not_reused %q; want 3 and 2", stats["clones_reused"], stats["clones_not_reused"])
		}
	}

	off := serve(t, "--upstream", testpg.AdminURL(t), "--migrations", migrations,
		"--pool-size", "1", "--max-clones", "1", "--reuse-clean=false")
	if a, b := leaseOnce(t, ctx, off, "SELECT 1"), leaseOnce(t, ctx, off, "SELECT 1"); a == b {
		t.Fatalf("--reuse-clean=false: clone %s handed out twice", a)
	}
}

// leaseOnce connects in db mode, runs sql, disconnects and returns the clone's name.
func leaseOnce(t *testing.T, ctx context.Context, addr, sql string) string {
	t.Helper()
	c, err := pgx.Connect(ctx, "postgres://someone@"+addr+"/app?sslmode=disable")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	var db string
	if err := c.QueryRow(ctx, "SELECT current_database()").Scan(&db); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Exec(ctx, sql); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return db
}
