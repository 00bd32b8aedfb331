package pool

import (
	"bufio"
	"context"
	"fmt"
	"github.com/pgtestproxy/pgtestproxy/internal/leasemode"
	"io"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/pgtestproxy/pgtestproxy/migrations"
)

// Helper processes: this test binary re-run with PGTP_HELPER set runs TestHelperProcess,
// which drives one pool on the catalog, prefix and migrations the parent names.
const (
	envHelper  = "PGTP_HELPER" // "build" or "lease"
	envConn    = "PGTP_HELPER_CONN"
	envCatalog = "PGTP_HELPER_CATALOG"
	envPrefix  = "PGTP_HELPER_PREFIX"
	envDir     = "PGTP_HELPER_DIR"
)

// helper is a running helper process.
type helper struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	lines chan string
}

func startHelper(t *testing.T, f *fixture, mode, dir string) *helper {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperProcess$", "-test.timeout=2m")
	cmd.Env = append(os.Environ(), envHelper+"="+mode, envConn+"="+f.admin, envCatalog+"="+f.catalog,
		envPrefix+"="+f.prefix, envDir+"="+dir)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	h := &helper{cmd: cmd, stdin: stdin, lines: make(chan string, 16)}
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if line := sc.Text(); strings.HasPrefix(line, "PGTP ") {
				h.lines <- strings.TrimPrefix(line, "PGTP ")
			}
		}
		close(h.lines)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	return h
}

// expect waits for the helper's next line, which must start with word.
func (h *helper) expect(t *testing.T, word string) []string {
	t.Helper()
	select {
	case line, ok := <-h.lines:
		if !ok {
			t.Fatalf("helper exited before %s", word)
		}
		f := strings.Fields(line)
		if len(f) == 0 || f[0] != word {
			t.Fatalf("helper said %q, want %s", line, word)
		}
		return f[1:]
	case <-time.After(60 * time.Second):
		t.Fatalf("helper did not say %s", word)
		return nil
	}
}

// TestBuildOnceAcrossProcesses races two OS processes and a pool in this one to build
// the same template: exactly one build happens, and all use its result.
func TestBuildOnceAcrossProcesses(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	d := newMigDir(t, map[string]string{"001_slow.up.sql": "SELECT pg_sleep(0.5);\nCREATE TABLE built (id int);\n"})
	m := &counting{Migrator: d}
	p := f.pool(f.config(map[string]Migrator{"": m}))
	helpers := []*helper{startHelper(t, f, "build", d.dir), startHelper(t, f, "build", d.dir)}
	for _, h := range helpers {
		h.expect(t, "READY")
	}
	var wg sync.WaitGroup
	var local *Lease
	var localErr error
	for _, h := range helpers {
		fmt.Fprintln(h.stdin, "go")
	}
	wg.Go(func() { local, localErr = p.Acquire(t.Context(), "", leasemode.DB) })
	builds := 0
	templates := map[string]bool{}
	for _, h := range helpers {
		f := h.expect(t, "BUILT") // BUILT <builds> <template db>
		n, _ := strconv.Atoi(f[0])
		builds += n
		templates[f[1]] = true
		h.stdin.Close()
		if err := h.cmd.Wait(); err != nil {
			t.Fatalf("helper: %v", err)
		}
	}
	wg.Wait()
	if localErr != nil {
		t.Fatal(localErr)
	}
	defer local.Release(t.Context(), true)
	builds += int(m.builds.Load())
	templates[p.templates[""].cur.Load().datname] = true
	if builds != 1 || len(templates) != 1 {
		t.Fatalf("%d builds of %d templates across 3 processes, want 1 of 1", builds, len(templates))
	}
}

// TestKilledProcessLeasesReclaimed: a process holding a lease is SIGKILLed; the next
// pool to start reclaims the clone, and GC reports such clones.
func TestKilledProcessLeasesReclaimed(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	d := newMigDir(t, simpleSchema)
	kill := func() string {
		h := startHelper(t, f, "lease", d.dir)
		clone := h.expect(t, "LEASED")[0]
		if err := h.cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		_ = h.cmd.Wait()
		if !dbExists(t, clone) {
			t.Fatalf("clone %s vanished before reclaim", clone)
		}
		return clone
	}
	// Reclaimed at start-up, once the dead process's backends have noticed and its
	// owner lock is gone.
	clone := kill()
	eventually(t, "the dead process to be deemed dead (lock gone, heartbeat stale)", func() bool {
		return queryInt(t, f.catalogURL(), "SELECT count(*) FROM owners o WHERE "+alive("o.id")) == 0
	})
	p := f.pool(f.config(map[string]Migrator{"": d}))
	eventually(t, "dead process's clone reclaimed at start-up", func() bool { return !dbExists(t, clone) })
	eventually(t, "its catalog row removed", func() bool {
		return queryInt(t, f.catalogURL(), "SELECT count(*) FROM migrated_dbs WHERE datname = $1", clone) == 0
	})
	// Reclaimed by GC of a running pool (once the dead process's backend has exited and
	// its owner lock is gone).
	clone = kill()
	var reclaimed []string
	eventually(t, "GC to reclaim the dead process's clone", func() bool {
		r, err := p.GC(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		reclaimed = append(reclaimed, r.Reclaimed...)
		return slices.Contains(reclaimed, clone)
	})
	if dbExists(t, clone) {
		t.Fatalf("GC reported %s reclaimed, but it exists", clone)
	}
}

// TestHelperProcess is the body of the helper processes; it is skipped in a normal run.
func TestHelperProcess(t *testing.T) {
	mode := os.Getenv(envHelper)
	if mode == "" {
		t.Skip("helper process for the multi-process tests")
	}
	os.Exit(helperMain(mode))
}

func helperMain(mode string) int {
	fail := func(err error) int {
		fmt.Fprintln(os.Stderr, "helper:", err)
		return 2
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	d, err := migrations.Open(os.Getenv(envDir))
	if err != nil {
		return fail(err)
	}
	m := &counting{Migrator: d}
	p, err := New(ctx, Config{
		ConnString: os.Getenv(envConn), Templates: map[string]Migrator{"": m},
		CatalogDB: os.Getenv(envCatalog), Prefix: os.Getenv(envPrefix), PoolSize: 1, Logger: zap.NewNop(),
		// A killed helper is deemed dead soon after its last heartbeat.
		HeartbeatInterval: 100 * time.Millisecond, ReclaimGrace: time.Second,
	})
	if err != nil {
		return fail(err)
	}
	defer p.Close()
	in := bufio.NewReader(os.Stdin)
	switch mode {
	case "build":
		fmt.Println("PGTP READY")
		if _, err := in.ReadString('\n'); err != nil {
			return fail(err)
		}
		l, err := p.Acquire(ctx, "", leasemode.DB)
		if err != nil {
			return fail(err)
		}
		fmt.Printf("PGTP BUILT %d %s\n", m.builds.Load(), p.templates[""].cur.Load().datname)
		l.Release(ctx, true)
		_, _ = in.ReadString('\n') // until the parent closes stdin
	case "lease":
		l, err := p.Acquire(ctx, "", leasemode.DB)
		if err != nil {
			return fail(err)
		}
		fmt.Printf("PGTP LEASED %s\n", l.Database())
		_, _ = in.ReadString('\n') // until killed
	}
	return 0
}
