package main

import (
	"bytes"
	"context"
	"encoding/csv"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/pgtestproxy/pgtestproxy/internal/testpg"
)

// serveMetrics runs serve with --metrics-listen on free ports and returns the proxy's
// and the metrics server's addresses.
func serveMetrics(t *testing.T, args ...string) (proxyAddr, metricsAddr string) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	ready, metrics := make(chan string, 1), make(chan string, 1)
	done := make(chan int, 1)
	var logs bytes.Buffer
	go func() {
		done <- runWith(ctx, append([]string{"serve", "--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0"}, args...),
			env(nil), io.Discard, &syncBuffer{b: &logs},
			hooks{ready: func(addr string) { ready <- addr }, metrics: func(addr string) { metrics <- addr }})
	}()
	t.Cleanup(func() {
		cancel()
		if code := <-done; code != 0 {
			t.Errorf("serve exited %d", code)
		}
	})
	for proxyAddr == "" || metricsAddr == "" {
		select {
		case proxyAddr = <-ready:
		case metricsAddr = <-metrics:
		case code := <-done:
			t.Fatalf("serve exited %d before it was ready", code)
		case <-time.After(2 * time.Minute):
			t.Fatal("serve not ready within 2 minutes")
		}
	}
	return proxyAddr, metricsAddr
}

func httpGet(t *testing.T, url string) (int, string) {
	t.Helper()
	client := http.Client{Timeout: 30 * time.Second}
	resp, err := client.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(body)
}

// scrape fetches /metrics and parses it with the Prometheus text parser.
func scrape(t *testing.T, addr string) map[string]*dto.MetricFamily {
	t.Helper()
	code, body := httpGet(t, "http://"+addr+"/metrics")
	if code != http.StatusOK {
		t.Fatalf("/metrics: %d %s", code, body)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(body))
	if err != nil {
		t.Fatalf("parse /metrics: %v", err)
	}
	return fams
}

// metricValue is the value of the family's metric whose labels include labels.
func metricValue(t *testing.T, fams map[string]*dto.MetricFamily, name string, labels ...string) float64 {
	t.Helper()
	f := fams[name]
	if f == nil {
		t.Fatalf("no metric %s", name)
	}
next:
	for _, m := range f.GetMetric() {
		for i := 0; i+1 < len(labels); i += 2 {
			if !slices.ContainsFunc(m.GetLabel(), func(l *dto.LabelPair) bool {
				return l.GetName() == labels[i] && l.GetValue() == labels[i+1]
			}) {
				continue next
			}
		}
		switch {
		case m.Counter != nil:
			return m.GetCounter().GetValue()
		case m.Gauge != nil:
			return m.GetGauge().GetValue()
		case m.Histogram != nil:
			return float64(m.GetHistogram().GetSampleCount())
		}
	}
	t.Fatalf("no metric %s%v", name, labels)
	return 0
}

// table is a console answer: column → value of each row.
type table []map[string]string

// consolePgx runs sql on the console with pgx's default (extended) protocol.
func consolePgx(t *testing.T, ctx context.Context, addr, sql string) table {
	t.Helper()
	c, err := pgx.Connect(ctx, "postgres://op@"+addr+"/pgtestproxy?sslmode=disable")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	rows, err := c.Query(ctx, sql)
	if err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	var out table
	for rows.Next() {
		vals := rows.RawValues()
		row := map[string]string{}
		for i, f := range rows.FieldDescriptions() {
			row[f.Name] = string(vals[i])
		}
		out = append(out, row)
	}
	if err := rows.Err(); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return out
}

// consolePsql runs sql on the console with psql (simple protocol).
func consolePsql(t *testing.T, addr, sql string) table {
	t.Helper()
	cmd := exec.Command(testpg.Psql(t), "-X", "--csv", "-c", sql, "postgres://op@"+addr+"/pgtestproxy?sslmode=disable")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("psql %s: %v\n%s", sql, err, out)
	}
	recs, err := csv.NewReader(bytes.NewReader(out)).ReadAll()
	if err != nil || len(recs) == 0 {
		t.Fatalf("psql %s: %v\n%s", sql, err, out)
	}
	var tb table
	for _, r := range recs[1:] {
		row := map[string]string{}
		for i, c := range recs[0] {
			row[c] = r[i]
		}
		tb = append(tb, row)
	}
	return tb
}

// mine keeps the rows of tb whose mine column is true.
func mine(tb table) table {
	var out table
	for _, r := range tb {
		if r["mine"] == "true" {
			out = append(out, r)
		}
	}
	return out
}

func one(t *testing.T, tb table, what string) map[string]string {
	t.Helper()
	if len(tb) != 1 {
		t.Fatalf("%s: %d rows, want 1: %v", what, len(tb), tb)
	}
	return tb[0]
}

// pollUntil calls f until it returns true or the deadline passes.
func pollUntil(t *testing.T, what string, f func() bool) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for !f() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 2 minutes", what)
		}
		time.Sleep(20 * time.Millisecond) // a polling interval, not a synchronisation
	}
}

// The metrics, the health endpoints and the console show the same counters, and they
// change as leases happen; /readyz says 503 while the template builds and 200 once it
// is built.
func TestMetricsReadyzAndConsole(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	admin := testpg.AdminURL(t)
	holder, err := pgx.Connect(ctx, admin)
	if err != nil {
		t.Fatal(err)
	}
	defer holder.Close(context.Background())
	// The slow migration sleeps until a role exists (roles, unlike advisory locks, are
	// seen from every database): the build lasts exactly as long as the test wants.
	role := testpg.UniqueName(t, "pgtp_go")
	t.Cleanup(func() { testpg.Exec(t, admin, "DROP ROLE IF EXISTS "+pgx.Identifier{role}.Sanitize()) })
	dir := t.TempDir()
	write := func(name, sql string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(sql), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("001_slow.up.sql", fmt.Sprintf(`DO $$ BEGIN
  WHILE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '%s') LOOP PERFORM pg_sleep(0.05); END LOOP;
END $$;
`, role))
	write("002_users.up.sql", "CREATE TABLE users (id int);\n")
	addr, maddr := serveMetrics(t, "--upstream", admin, "--migrations", dir, "--pool-size", "1", "--ttl", "1ms")

	if code, body := httpGet(t, "http://"+maddr+"/healthz"); code != http.StatusOK {
		t.Fatalf("/healthz: %d %s", code, body)
	}
	if code, body := httpGet(t, "http://"+maddr+"/readyz"); code != http.StatusServiceUnavailable || !strings.Contains(body, "not built") {
		t.Fatalf("/readyz before the build: %d %q, want 503 saying the template is not built", code, body)
	}
	before := scrape(t, maddr)
	statsBefore := one(t, consolePgx(t, ctx, addr, "SHOW STATS"), "SHOW STATS")
	tplBefore := one(t, consolePsql(t, addr, "SHOW TEMPLATES"), "SHOW TEMPLATES")
	if tplBefore["hash"] != "" || tplBefore["last_used"] != "" {
		t.Errorf("SHOW TEMPLATES before any lease: %v, want no hash nor last use", tplBefore)
	}

	// The first client starts the build, which waits for the test's lock.
	type conn struct {
		c   *pgx.Conn
		err error
	}
	connected := make(chan conn, 1)
	keyed := "postgres://someone@" + addr + "/app?sslmode=disable&options=-cpgtestproxy.session%3Dk1"
	go func() {
		c, err := pgx.Connect(ctx, keyed)
		connected <- conn{c, err}
	}()
	pollUntil(t, "the slow migration runs", func() bool {
		var n int
		err := holder.QueryRow(ctx, "SELECT count(*) FROM pg_stat_activity WHERE pid <> pg_backend_pid() AND query LIKE $1",
			"%"+role+"%").Scan(&n)
		return err == nil && n > 0
	})
	if code, body := httpGet(t, "http://"+maddr+"/readyz"); code != http.StatusServiceUnavailable {
		t.Fatalf("/readyz during the build: %d %q, want 503", code, body)
	}
	testpg.Exec(t, admin, "CREATE ROLE "+pgx.Identifier{role}.Sanitize())
	pollUntil(t, "/readyz says 200", func() bool {
		code, _ := httpGet(t, "http://"+maddr+"/readyz")
		return code == http.StatusOK
	})
	cn := <-connected
	if cn.err != nil {
		t.Fatal(cn.err)
	}
	client := cn.c
	if _, err := client.Exec(ctx, "SELECT count(*) FROM users"); err != nil {
		t.Fatal(err)
	}

	after := scrape(t, maddr)
	for _, m := range []struct {
		name   string
		labels []string
		delta  float64
	}{
		{"pgtestproxy_leases_total", []string{"mode", "db"}, 1},
		{"pgtestproxy_leases_active", []string{"mode", "db"}, 1},
		{"pgtestproxy_sessions_active", []string{"mode", "db"}, 1},
		{"pgtestproxy_sessions_total", []string{"mode", "db"}, 1},
		{"pgtestproxy_acquire_duration_seconds", []string{"mode", "db"}, 1},
		{"pgtestproxy_leases_total", []string{"mode", "tx"}, 0},
		// Two builds: the prefix template of the first migration, then the template
		// cloned from it with the second (incremental templates).
		{"pgtestproxy_template_builds_total", nil, 2},
		{"pgtestproxy_template_build_duration_seconds", nil, 2},
		{"pgtestproxy_template_built", []string{"template", "(default)"}, 1},
	} {
		if d := metricValue(t, after, m.name, m.labels...) - metricValue(t, before, m.name, m.labels...); d != m.delta {
			t.Errorf("%s%v changed by %v, want %v", m.name, m.labels, d, m.delta)
		}
	}
	if v := metricValue(t, after, "pgtestproxy_clones_made_total"); v < 1 {
		t.Errorf("clones_made_total = %v, want ≥ 1", v)
	}
	if v := metricValue(t, after, "pgtestproxy_pool_clones", "template", "(default)", "state", "leased"); v != 1 {
		t.Errorf("pool_clones{leased} = %v, want 1", v)
	}
	if v := metricValue(t, after, "pgtestproxy_relayed_bytes_total", "direction", "out"); v <= 0 {
		t.Errorf("relayed_bytes_total{out} = %v, want > 0", v)
	}

	// A tx-mode lease counts under mode="tx".
	txc, err := pgx.Connect(ctx, "postgres://someone@"+addr+"/app?sslmode=disable&options=-cpgtestproxy.mode%3Dtx")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := txc.Exec(ctx, "SELECT 1"); err != nil {
		t.Fatal(err)
	}
	withTx := scrape(t, maddr)
	for _, name := range []string{"pgtestproxy_leases_total", "pgtestproxy_sessions_active", "pgtestproxy_acquire_duration_seconds"} {
		if v := metricValue(t, withTx, name, "mode", "tx"); v != 1 {
			t.Errorf(`%s{mode="tx"} = %v with one tx-mode client, want 1`, name, v)
		}
	}
	txc.Close(ctx)
	pollUntil(t, "the tx-mode lease ends", func() bool { return len(mine(consolePgx(t, ctx, addr, "SHOW LEASES"))) == 1 })

	// A refused client is counted under its SQLSTATE, in both views.
	if _, err := pgx.Connect(ctx, "postgres://someone@"+addr+"/app?sslmode=disable&options=-cpgtestproxy.mode%3Dbogus"); err == nil {
		t.Fatal("a bogus mode was accepted")
	}
	if v := metricValue(t, scrape(t, maddr), "pgtestproxy_errors_total", "sqlstate", "22023"); v != 1 {
		t.Errorf(`errors_total{sqlstate="22023"} = %v, want 1`, v)
	}

	stats := one(t, consolePsql(t, addr, "SHOW STATS"), "SHOW STATS")
	for col, want := range map[string]string{"acquires_db": "1", "sessions_active_db": "1",
		"templates_built": "2", "errors_by_sqlstate": "22023=1"} {
		if stats[col] != want || statsBefore[col] == want {
			t.Errorf("SHOW STATS %s: %q before, %q after, want it to become %q", col, statsBefore[col], stats[col], want)
		}
	}
	for _, col := range []string{"acquire_p50_ms_db", "acquire_p99_ms_db", "clone_p50_ms", "build_p99_ms"} {
		if stats[col] == "" || stats[col] == "0.0" || stats[col] == statsBefore[col] {
			t.Errorf("SHOW STATS %s: %q before, %q after, want a time", col, statsBefore[col], stats[col])
		}
	}
	if stats["goroutines"] == "" || stats["acquires_tx"] != "1" || stats["clones_made"] == "0" || stats["panics"] != "0" {
		t.Errorf("SHOW STATS: %v", stats)
	}

	tpl := one(t, consolePgx(t, ctx, addr, "SHOW TEMPLATES"), "SHOW TEMPLATES")
	if len(tpl["hash"]) < 16 || tpl["migrations"] != "2" || tpl["last_used"] == "" || tpl["build_ms"] == "" ||
		tpl["strategy"] == "" || tpl["database"] == "" || !strings.Contains(tpl["source"], "golang-migrate") {
		t.Errorf("SHOW TEMPLATES after a lease: %v", tpl)
	}
	pools := one(t, consolePsql(t, addr, "SHOW POOLS"), "SHOW POOLS")
	if pools["leased"] != "1" {
		t.Errorf("SHOW POOLS: %v, want one leased", pools)
	}
	var clone string
	if err := client.QueryRow(ctx, "SELECT current_database()").Scan(&clone); err != nil {
		t.Fatal(err)
	}
	// Other test processes share the test server's catalog: their leases show too.
	lease := one(t, mine(consolePgx(t, ctx, addr, "SHOW LEASES")), "SHOW LEASES (this proxy's)")
	if lease["database"] != clone || lease["mode"] != "db" || lease["template"] != "(default)" || lease["age_s"] == "" ||
		lease["mine"] != "true" || lease["session_key"] != "k1" || lease["connections"] != "1" ||
		lease["clients"] != client.PgConn().Conn().LocalAddr().String() {
		t.Errorf("SHOW LEASES: %v, want %s in db mode, key k1, one connection from %s", lease, clone,
			client.PgConn().Conn().LocalAddr())
	}
	second, err := pgx.Connect(ctx, keyed)
	if err != nil {
		t.Fatal(err)
	}
	if lease := one(t, mine(consolePsql(t, addr, "SHOW LEASES")), "SHOW LEASES (this proxy's)"); lease["connections"] != "2" ||
		!strings.Contains(lease["clients"], second.PgConn().Conn().LocalAddr().String()) {
		t.Errorf("SHOW LEASES with a second connection on the key: %v", lease)
	}
	second.Close(ctx)

	// RELOAD sees a new migration; the next lease uses a new template; GC drops the old.
	write("003_more.up.sql", "CREATE TABLE more (id int);\n")
	reload := one(t, consolePsql(t, addr, "RELOAD"), "RELOAD")
	if reload["changed"] != "true" || reload["built_hash"] != tpl["hash"] || reload["hash"] == tpl["hash"] {
		t.Fatalf("RELOAD after adding a migration: %v (built %s)", reload, tpl["hash"])
	}
	client.Close(ctx)
	pollUntil(t, "the lease ends", func() bool { return len(mine(consolePgx(t, ctx, addr, "SHOW LEASES"))) == 0 })
	c2, err := pgx.Connect(ctx, "postgres://someone@"+addr+"/app?sslmode=disable")
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close(context.Background())
	if _, err := c2.Exec(ctx, "SELECT count(*) FROM more"); err != nil {
		t.Fatalf("the lease after RELOAD lacks the new migration: %v", err)
	}
	if again := one(t, consolePgx(t, ctx, addr, "RELOAD"), "RELOAD"); again["changed"] != "false" || again["built_hash"] != reload["hash"] {
		t.Errorf("RELOAD after the rebuild: %v, want built %s", again, reload["hash"])
	}
	gc := consolePsql(t, addr, "GC")
	if !slices.ContainsFunc(gc, func(r map[string]string) bool {
		return r["action"] == "dropped template" && r["database"] == tpl["database"]
	}) {
		t.Errorf("GC: %v, want the old template %s dropped", gc, tpl["database"])
	}
	if again := consolePgx(t, ctx, addr, "GC"); slices.ContainsFunc(again, func(r map[string]string) bool {
		return r["database"] == tpl["database"]
	}) {
		t.Errorf("second GC (pgx): %v drops %s again", again, tpl["database"])
	}
	var exists bool
	if err := holder.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)", tpl["database"]).Scan(&exists); err != nil || exists {
		t.Errorf("old template %s still exists (%v) after GC", tpl["database"], err)
	}
}
