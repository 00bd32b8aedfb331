package proxy

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgtestproxy/pgtestproxy/internal/leasemode"
)

// TestTxLeaseStartStuckRetiresClone: a lease start whose own statement cannot finish
// (here its look at the sequences waits for the lock of another connection's open DROP SEQUENCE on the
// clone) ends at LeaseStepTimeout: the client gets 08006 instead of a hang (issue 11
// item 4), and the clone is retired, not handed out again.
func TestTxLeaseStartStuckRetiresClone(t *testing.T) {
	t.Parallel()
	p := newTestProvider(t)
	s := startProxy(t, Config{Provider: p, LeaseStepTimeout: 2 * time.Second})
	ctx := testContext(t)

	first := connect(t, modeURL(s, leasemode.Tx, "app"))
	db := currentDatabase(t, first)
	_ = first.Close(ctx)
	waitFor(t, "the first lease to end", func() bool { return p.liveCount() == 0 })

	locker, err := pgx.Connect(ctx, dbURL(p.admin, db))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = locker.Close(context.Background()) })
	if _, err := locker.Exec(ctx, "BEGIN; DROP SEQUENCE fresh"); err != nil {
		t.Fatal(err)
	}

	// Other startup parameters: the kept backend does not fit, so the lease opens a
	// new one, whose start reads the sequences.
	_, err = pgx.Connect(ctx, modeURL(s, leasemode.Tx, "app", "application_name=stuck"))
	e := wantSQLState(t, err, "08006")
	t.Logf("refused: %s (hint: %s)", e.Message, e.Hint)
	waitFor(t, "the stuck lease to end", func() bool { return p.liveCount() == 0 })
	rel := p.releases()
	if last := rel[len(rel)-1]; last.database != db || last.clean {
		t.Fatalf("last release %+v, want %s retired (clean false)", last, db)
	}
}
