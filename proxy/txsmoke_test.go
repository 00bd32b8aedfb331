package proxy

import (
	"testing"
)

func TestTxSmoke(t *testing.T) {
	p := newTestProvider(t)
	s := startProxy(t, Config{Provider: p})
	c := connect(t, proxyURL(s, "app", "mode=tx"))
	ctx := testContext(t)
	var n int
	if err := c.QueryRow(ctx, "SELECT count(*) FROM items").Scan(&n); err != nil || n != 3 {
		t.Fatalf("count %d %v", n, err)
	}
	if _, err := c.Exec(ctx, "INSERT INTO items VALUES (4, 'four')"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Exec(ctx, "INSERT INTO items VALUES (4, 'four')"); err == nil {
		t.Fatal("dup insert worked")
	}
	if err := c.QueryRow(ctx, "SELECT count(*) FROM items").Scan(&n); err != nil || n != 4 {
		t.Fatalf("count %d %v", n, err)
	}
	tx, err := c.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, "INSERT INTO items VALUES (5, 'five')"); err != nil {
		t.Fatal(err)
	}
	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	if err := c.QueryRow(ctx, "SELECT count(*) FROM items").Scan(&n); err != nil || n != 4 {
		t.Fatalf("count %d %v", n, err)
	}
	if st := c.PgConn().TxStatus(); st != 'I' {
		t.Fatalf("transaction status %q after the rollback, want 'I'", st)
	}
}
