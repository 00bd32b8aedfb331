package pool

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/pgtestproxy/pgtestproxy/internal/testpg"
)

// A build logs each migration as it begins (n/total of the whole set, file, elapsed)
// and, while it runs, a line every ProgressInterval saying where it is;
// Config.Progress follows it to the end. The second migration waits on a gate the test opens once the periodic
// line has named it; the third sleeps.
func TestBuildProgress(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	gate, open := testpg.Gate(t)
	d := newMigDir(t, map[string]string{
		"001_a.up.sql":    "CREATE TABLE a (id int);\n",
		"002_lock.up.sql": gate + "\n",
		"003_slow.up.sql": "SELECT pg_sleep(0.2);\nCREATE TABLE c (id int);\n",
	})
	core, logs := observer.New(zap.DebugLevel)
	var mu sync.Mutex
	var seen []BuildProgress
	cfg := f.config(map[string]Migrator{"app": d})
	cfg.Logger, cfg.ProgressInterval = zap.New(core), 20*time.Millisecond
	cfg.Progress = func(b BuildProgress) {
		mu.Lock()
		seen = append(seen, b)
		mu.Unlock()
	}
	p := f.pool(cfg)
	built := make(chan error, 1)
	go func() { built <- p.Prepare(context.Background(), "app") }()
	eventually(t, "a progress line naming the blocked migration", func() bool {
		for _, e := range logs.FilterMessage("template build in progress").All() {
			if m := e.ContextMap(); m["file"] == "002_lock.up.sql" && m["n"] == int64(2) && m["total"] == int64(3) &&
				m["template"] == "app" {
				return true
			}
		}
		return false
	})
	open()
	if err := <-built; err != nil {
		t.Fatal(err)
	}
	var files []string
	for _, e := range logs.FilterMessage("applying migration").All() {
		m := e.ContextMap()
		files = append(files, fmt.Sprintf("%d/%d %s", m["n"], m["total"], m["file"]))
		if _, ok := m["elapsed"]; !ok {
			t.Errorf("applying migration without elapsed: %v", m)
		}
	}
	if want := []string{"1/3 001_a.up.sql", "2/3 002_lock.up.sql", "3/3 003_slow.up.sql"}; !slices.Equal(files, want) {
		t.Fatalf("migration log lines %q, want %q", files, want)
	}
	mu.Lock()
	defer mu.Unlock()
	var steps []int
	for _, b := range seen {
		steps = append(steps, b.Step)
	}
	// The build is incremental: the prefix template 1..2 is built (and sealed) first, then
	// cloned and given 3; each build reports from step 0 to its end, numbered in the whole set.
	if last := seen[len(seen)-1]; !slices.Equal(steps, []int{0, 1, 2, 2, 0, 3, 3}) || !last.Done || last.Template != "app" ||
		last.Elapsed < 200*time.Millisecond {
		t.Fatalf("Progress saw steps %v, last %+v", steps, last)
	}
}
