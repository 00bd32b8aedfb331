package pool

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pgtestproxy/pgtestproxy/migrations"
)

// TestCommandBuildsOnceAcrossPools: pools sharing a catalog, each with a Command of
// its own (as separate processes have), run the migrate command once between them,
// and a clone of the result holds what it made.
func TestCommandBuildsOnceAcrossPools(t *testing.T) {
	t.Parallel()
	psql, err := exec.LookPath("psql")
	if err != nil {
		debian, _ := filepath.Glob("/usr/lib/postgresql/*/bin/psql")
		if len(debian) == 0 {
			t.Fatal("psql not found: apt-get install postgresql-client")
		}
		psql = debian[0]
	}
	f := newFixture(t)
	dir := t.TempDir()
	runs := filepath.Join(dir, "runs")
	script := "echo run >> " + runs + "; " + psql + " -v ON_ERROR_STOP=1 -q -c 'SELECT pg_sleep(0.3); CREATE TABLE from_hook (id int)'"
	const pools = 3
	var ps []*Pool
	for range pools {
		m, err := migrations.NewCommand(migrations.CommandConfig{Command: script})
		if err != nil {
			t.Fatal(err)
		}
		ps = append(ps, f.pool(f.config(map[string]Migrator{"": m})))
	}
	leases := acquireRacing(t, ps, 2*pools, true)
	b, err := os.ReadFile(runs)
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(string(b), "run"); n != 1 {
		t.Fatalf("the command ran %d times, want 1", n)
	}
	c := connect(t, leases[0])
	if _, err := c.Exec(t.Context(), "SELECT * FROM from_hook").ReadAll(); err != nil {
		t.Fatalf("the clone lacks the command's table: %v", err)
	}
	stats, err := ps[1].Stats(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if len(stats) != 1 || !strings.HasPrefix(stats[0].Source, "command ") {
		t.Fatalf("stats = %+v, want the command as the source", stats)
	}
}
