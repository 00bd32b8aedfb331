package testpg

import (
	"context"
	"os"
	"testing"

	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/pgtestproxy/pgtestproxy/internal/pgserver"
)

func TestMain(m *testing.M) { os.Exit(Main(m)) }

func TestDatabasesAreSeparate(t *testing.T) {
	t.Parallel()
	a, nameA := NewDatabase(t)
	b, nameB := NewDatabase(t)
	if nameA == nameB {
		t.Fatal("two tests' databases share a name")
	}
	Exec(t, a, "CREATE TABLE only_in_a (id int)")
	ctx := context.Background()
	c, err := pgx.Connect(ctx, b)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	var db string
	var n int
	if err := c.QueryRow(ctx, "SELECT current_database(), count(*) FROM pg_tables WHERE tablename = 'only_in_a'").Scan(&db, &n); err != nil {
		t.Fatal(err)
	}
	if db != nameB || n != 0 {
		t.Fatalf("database %s sees %d only_in_a tables", db, n)
	}
}

func TestDatabaseDroppedAtCleanup(t *testing.T) {
	var name string
	t.Run("inner", func(t *testing.T) { _, name = NewDatabase(t) })
	ctx := context.Background()
	c, err := pgx.Connect(ctx, AdminURL(t))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	var n int
	if err := c.QueryRow(ctx, "SELECT count(*) FROM pg_database WHERE datname = $1", name).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 0 {
		t.Fatalf("database %s still exists after its test ended", name)
	}
}

// TestDropLeftovers runs on a scratch server of its own: databases a killed run left
// behind (a template among them) go, the system databases stay.
func TestDropLeftovers(t *testing.T) {
	dir, err := os.MkdirTemp("/dev/shm", "testpg-leftovers-")
	if err != nil {
		dir = t.TempDir()
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	s, err := pgserver.Start(t.Context(), pgserver.Config{DataDir: dir + "/pg"})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	admin := s.ConnString("postgres")
	Exec(t, admin, "CREATE DATABASE leftover")
	Exec(t, admin, "CREATE DATABASE leftover_tpl IS_TEMPLATE true ALLOW_CONNECTIONS false")
	ctx := context.Background()
	dropLeftovers(ctx, admin)
	c, err := pgx.Connect(ctx, admin)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	rows, _ := c.Query(ctx, "SELECT datname FROM pg_database ORDER BY datname")
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(names, ","); got != "postgres,template0,template1" {
		t.Fatalf("databases after dropLeftovers: %s", got)
	}
}
