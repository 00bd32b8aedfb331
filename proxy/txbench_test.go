package proxy

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgtestproxy/pgtestproxy/internal/leasemode"
	"github.com/pgtestproxy/pgtestproxy/internal/testpg"
)

// benchClients is the number of persistent connections of BenchmarkSelectOnly, as
// pgbench -c; benchAccounts the rows of its table (pgbench's scale 1).
const (
	benchClients  = 4
	benchAccounts = 100000
)

// BenchmarkSelectOnly runs pgbench -S's transaction (one indexed SELECT by random aid,
// simple protocol, autocommit) on persistent connections: direct to the server,
// through the proxy in tx mode and in db mode, and through pgbouncer in session mode
// when it is installed, interleaved in one run. It reports the time per statement
// (all clients together) of each, and tx mode's throughput relative to direct and to
// pgbouncer (the goal is at least 0.8 of pgbouncer).
func BenchmarkSelectOnly(b *testing.B) {
	p := newWarmProvider(b, 2*benchClients, `CREATE TABLE pgbench_accounts (aid int PRIMARY KEY, bid int, abalance int, filler char(84));
		INSERT INTO pgbench_accounts SELECT i, 1, 0, '' FROM generate_series(1, 100000) i`, "VACUUM ANALYZE pgbench_accounts")
	s := startProxy(b, Config{Provider: p, Logger: nopLogger()})
	var direct string
	for name := range p.cfgs {
		direct = testpg.URL(b, name)
		break
	}
	targets := []struct{ name, url string }{
		{"direct", direct},
		{"tx", modeURL(s, leasemode.Tx, "app")},
		{"db", modeURL(s, leasemode.DB, "app")},
	}
	if bouncer := startPgbouncer(b, direct); bouncer != "" {
		targets = append(targets, struct{ name, url string }{"pgbouncer", bouncer})
	}
	conns := make([][]*pgconn.PgConn, len(targets))
	for i, tg := range targets {
		conns[i] = openClients(b, tg.url)
	}
	const rounds = 4
	per := max(b.N/rounds/benchClients, 1)
	took := make([]time.Duration, len(targets))
	b.ResetTimer()
	for range rounds {
		for i := range targets {
			took[i] += selectOnly(b, conns[i], per)
		}
	}
	b.StopTimer()
	total := float64(rounds * per * benchClients)
	for i, tg := range targets {
		b.ReportMetric(float64(took[i].Nanoseconds())/total, tg.name+"-ns/stmt")
	}
	b.ReportMetric(float64(took[0])/float64(took[1]), "tx/direct")
	if len(targets) == 4 {
		b.ReportMetric(float64(took[3])/float64(took[1]), "tx/pgbouncer")
	}
}

func openClients(b *testing.B, url string) []*pgconn.PgConn {
	b.Helper()
	out := make([]*pgconn.PgConn, benchClients)
	for i := range out {
		c, err := pgconn.Connect(context.Background(), url)
		if err != nil {
			b.Fatalf("connect %s: %v", url, err)
		}
		b.Cleanup(func() { _ = c.Close(context.Background()) })
		out[i] = c
	}
	return out
}

// selectOnly runs n statements on each client concurrently and returns the wall time.
func selectOnly(b *testing.B, conns []*pgconn.PgConn, n int) time.Duration {
	var wg sync.WaitGroup
	start := time.Now()
	for _, c := range conns {
		wg.Go(func() {
			for range n {
				sql := "SELECT abalance FROM pgbench_accounts WHERE aid = " + strconv.Itoa(1+rand.IntN(benchAccounts))
				if _, err := c.Exec(context.Background(), sql).ReadAll(); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	return time.Since(start)
}

// startPgbouncer runs pgbouncer in session mode in front of the database at dbURL
// until b ends, and returns a URL through it; "" when pgbouncer is not installed.
func startPgbouncer(b *testing.B, dbURL string) string {
	bin, err := exec.LookPath("pgbouncer")
	if err != nil {
		return ""
	}
	u, err := url.Parse(dbURL)
	if err != nil {
		b.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	_ = ln.Close()
	dir, err := os.MkdirTemp("", "pgbouncer")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = os.RemoveAll(dir) })
	_ = os.Chmod(dir, 0o777)
	ini := fmt.Sprintf(`[databases]
bench = host=%s port=%s dbname=%s user=%s
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = %d
unix_socket_dir =
auth_type = any
pool_mode = session
max_client_conn = 100
default_pool_size = %d
logfile = %s
pidfile = %s
`, u.Hostname(), u.Port(), u.Path[1:], u.User.Username(), port, benchClients,
		filepath.Join(dir, "pgbouncer.log"), filepath.Join(dir, "pgbouncer.pid"))
	cfg := filepath.Join(dir, "pgbouncer.ini")
	if err := os.WriteFile(cfg, []byte(ini), 0o644); err != nil {
		b.Fatal(err)
	}
	args := []string{cfg}
	if os.Geteuid() == 0 {
		args = append([]string{"-u", "nobody"}, args...)
	}
	cmd := exec.Command(bin, args...)
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if c, err := net.Dial("tcp", addr); err == nil {
			_ = c.Close()
			break
		}
		if time.Now().After(deadline) {
			b.Fatalf("pgbouncer did not listen on %s", addr)
		}
	}
	return fmt.Sprintf("postgres://%s@%s/bench?sslmode=disable", u.User.Username(), addr)
}
