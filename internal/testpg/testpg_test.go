package testpg

import (
	"context"
	"os"
	"testing"

	"github.com/jackc/pgx/v5"
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
