package proxy

import (
	"fmt"
	"net"
	"os"
	"runtime"
	"runtime/pprof"
	"strconv"
	"testing"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/pgtestproxy/pgtestproxy/internal/leasemode"
)

// TestStressTxFootprint opens many idle tx-mode sessions (sharing one session key, so
// one clone and one backend) and prints the proxy's heap and goroutines per session,
// as SHOW STATS and the runtime see them (issue 11 item 8). The clients are raw
// sockets, so the heap is the proxy's. PGTESTPROXY_STRESS_SESSIONS sets how many;
// PGTESTPROXY_STRESS_HEAPPROFILE names a file for a heap profile taken with them open;
// PGTESTPROXY_STRESS_OWN_LEASES=1 gives each session a lease of its own (a clone and
// a backend each: keep the count under the test server's max_connections).
func TestStressTxFootprint(t *testing.T) {
	sessions := 50
	if n, err := strconv.Atoi(os.Getenv("PGTESTPROXY_STRESS_SESSIONS")); err == nil && n > 0 {
		sessions = n
	}
	key := "footprint"
	if os.Getenv("PGTESTPROXY_STRESS_OWN_LEASES") == "1" {
		key = ""
	}
	p := newTestProvider(t)
	s := startProxy(t, Config{Provider: p, Logger: nopLogger(), MaxSessions: sessions + 10})
	// Warm up: the lease exists, its backend is open.
	first := rawConn(t, s)
	startTx(t, first, key)
	base := heapInUse()
	baseG := s.Stats().Goroutines
	for range sessions {
		startTx(t, rawConn(t, s), key)
	}
	heap := heapInUse() - base
	if path := os.Getenv("PGTESTPROXY_STRESS_HEAPPROFILE"); path != "" { // go tool pprof it
		f, err := os.Create(path)
		if err != nil {
			t.Fatal(err)
		}
		if err := pprof.WriteHeapProfile(f); err != nil {
			t.Fatal(err)
		}
		_ = f.Close()
	}
	goroutines := s.Stats().Goroutines - baseG
	t.Logf("%d idle tx sessions (session key %q): heap +%.1f MiB (%.1f KiB each), goroutines +%d (%.1f each)",
		sessions, key, float64(heap)/(1<<20), float64(heap)/1024/float64(sessions), goroutines,
		float64(goroutines)/float64(sessions))
	if got := s.Stats().SessionsActive; got != int64(sessions+1) {
		t.Fatalf("%d sessions active, want %d", got, sessions+1)
	}
}

// startTx completes a tx-mode start-up with session key (none when empty) on c.
func startTx(t *testing.T, c net.Conn, key string) {
	t.Helper()
	params := map[string]string{"user": "f", "database": "app", "mode": string(leasemode.Tx)}
	if key != "" {
		params["session"] = key
	}
	fe := pgproto3.NewFrontend(c, c)
	fe.Send(&pgproto3.StartupMessage{ProtocolVersion: pgproto3.ProtocolVersion30, Parameters: params})
	if err := fe.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := untilReady(fe); err != nil {
		t.Fatal(fmt.Errorf("start-up: %w", err))
	}
}

// heapInUse is the heap in use after a collection.
func heapInUse() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapInuse
}
