package proxy

import (
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/pgtestproxy/pgtestproxy/internal/leasemode"
)

// A portal ends with its unit's implicit transaction, as on a plain server: a
// connection of a shared tx-mode session key that ran a prepared statement through
// the unnamed portal (pgx's default) leaves nothing open that keeps another connection
// of the key from dropping the table, whether its next message is a Sync's unit or a
// simple Query.
func TestTxPortalEndsWithUnit(t *testing.T) {
	t.Parallel()
	p := newTestProvider(t)
	s := startProxy(t, Config{Provider: p})
	ctx := testContext(t)
	for _, next := range []string{"", "SELECT 1"} {
		t.Run("then "+next, func(t *testing.T) {
			key := "session=portal" + string(rune('a'+len(next)))
			a := connect(t, modeURL(s, leasemode.Tx, "app", key))
			b := connect(t, modeURL(s, leasemode.Tx, "app", key))
			if _, err := b.Exec(ctx, "CREATE TABLE gone (id int); INSERT INTO gone VALUES (1), (2)"); err != nil {
				t.Fatal(err)
			}
			var n int
			if err := a.QueryRow(ctx, "SELECT count(*) FROM gone WHERE id > $1", 0).Scan(&n); err != nil || n != 2 {
				t.Fatalf("count: %d, %v", n, err)
			}
			if next != "" {
				if _, err := a.Exec(ctx, next, pgx.QueryExecModeSimpleProtocol); err != nil {
					t.Fatal(err)
				}
			}
			if _, err := b.Exec(ctx, "DROP TABLE gone"); err != nil {
				t.Fatalf("DROP TABLE after the other connection's query: %v", err)
			}
		})
	}
}
