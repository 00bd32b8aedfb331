package integration

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// TestStressMigrationEdit adds a migration while the load runs with the clone cap
// tight enough that clients wait for clones. Every lease asked for after the edit gets
// the new template; clients that were waiting move to it (counted) and none gets
// 53300 or any other error; connections leased on the old template before the edit
// keep working on it and end normally; then no clone of the old template is left.
func TestStressMigrationEdit(t *testing.T) {
	t.Parallel()
	sessions := min(stressKnob(envStressSessions, 16), 32) // waiting, not volume, is the point
	secs := stressKnob(envStressSeconds, 3)
	u := newStressUpstream(t, sessions+100)
	mig := migrationsDir(t)
	p := startProxyProc(t, u.url("postgres"), mig, fmt.Sprintf("--max-clones=%d", max(6, sessions/2)),
		"--acquire-timeout=2m")
	old := p.console("SHOW TEMPLATES")[0]["database"]
	held := map[string]*pgx.Conn{}
	for _, mode := range stressModes {
		c, err := pgx.Connect(t.Context(), p.url(mode, ""))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close(context.Background())
		held[mode] = c
	}
	l := startLoad(t, p, sessions)
	waitLeases(t, l, 2*sessions)

	if err := os.WriteFile(filepath.Join(mig, "003_note.up.sql"), []byte("ALTER TABLE users ADD COLUMN note text;"), 0o644); err != nil {
		t.Fatal(err)
	}
	l.edit()
	time.Sleep(time.Duration(secs) * time.Second) // the load runs on: this is its length, not a wait for an event
	for mode, c := range held {
		if got := columns(t, c); got != "id,name" {
			t.Errorf("%s lease of the old template now has users(%s)", mode, got)
		}
		c.Close(context.Background())
	}
	l.halt()
	cur := p.console("SHOW TEMPLATES")[0]["database"]
	t.Logf("migration edit under %d sessions: %d waiters moved to the new template; %s", sessions, l.moved, l.figures())
	if cur == old {
		t.Fatalf("template still %s after the edit", old)
	}
	if bad := l.unexpected(); len(bad) > 0 {
		t.Errorf("unexpected across the edit: %s", strings.Join(bad, "; "))
	}
	hash := strings.TrimPrefix(old, "pgtp_v2_tpl_")
	gone := waitFor(t, "the old template's clones to be dropped", time.Minute, func() bool {
		return countRows(t, u, "pgtestproxy", `SELECT (SELECT count(*) FROM catalog_v2.migrated_dbs WHERE template_db = $1)
			+ (SELECT count(*) FROM pg_database WHERE starts_with(datname, 'pgtp_v2_' || left($2, 8) || '_'))`, old, hash) == 0
	})
	t.Logf("migration edit: the old template's clones were gone %s after the load stopped", gone.Round(time.Millisecond))
	p.stop()
	gc := gcRun(t, u.url("postgres"), mig)
	if c := census(t, u); c.leaked != 0 {
		t.Errorf("%d clones leaked after stop + gc (%s): %s", c.leaked, gc, c.detail)
	}
}

// columns lists the users table's columns as the connection's clone has them.
func columns(t *testing.T, c *pgx.Conn) string {
	t.Helper()
	var s string
	if err := c.QueryRow(t.Context(), `SELECT string_agg(column_name, ',' ORDER BY ordinal_position)
		FROM information_schema.columns WHERE table_name = 'users'`).Scan(&s); err != nil {
		t.Fatal(err)
	}
	return s
}
