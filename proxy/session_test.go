package proxy

import (
	"context"
	"net"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/pgtestproxy/pgtestproxy/internal/leasemode"
	"github.com/pgtestproxy/pgtestproxy/internal/testpg"
)

// Runtime parameters reach the upstream; the proxy's own (mode, session and the
// pgtestproxy.* options) are taken out and never do, or the upstream would refuse them.
func TestRuntimeParamsForwarded(t *testing.T) {
	t.Parallel()
	p := newTestProvider(t)
	s := startProxy(t, Config{Provider: p})
	cfg, err := pgx.ParseConfig(proxyURL(s, "app", "mode=tx", "session=params",
		"options=-c%20statement_timeout%3D1234%20-c%20pgtestproxy.mode%3Ddb"))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"application_name":   "params-test",
		"search_path":        "pg_catalog,public",
		"TimeZone":           "Asia/Tokyo",
		"DateStyle":          "SQL, DMY",
		"extra_float_digits": "2",
		"client_encoding":    "UTF8",
	}
	for k, v := range want {
		cfg.RuntimeParams[k] = v
	}
	want["statement_timeout"] = "1234ms"
	c, err := pgx.ConnectConfig(testContext(t), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(context.Background())
	for k, v := range want {
		var got string
		if err := c.QueryRow(testContext(t), "SELECT current_setting($1)", k).Scan(&got); err != nil {
			t.Fatal(err)
		}
		if got != v {
			t.Errorf("%s = %q upstream, want %q", k, got, v)
		}
	}
	if got := c.PgConn().ParameterStatus("TimeZone"); got != "Asia/Tokyo" {
		t.Errorf("client got ParameterStatus TimeZone %q", got)
	}
	p.mu.Lock()
	req := p.requests[0]
	p.mu.Unlock()
	// The plain parameter mode=tx wins over the option's db.
	if req != (LeaseRequest{Database: "app", Mode: leasemode.Tx, Session: "params"}) {
		t.Errorf("provider asked for %+v", req)
	}
}

// The lease ends however the session ends: the backend dying under it (the client
// sees the server's own FATAL), or the client vanishing mid-query.
func TestLeaseReleasedWhenSessionBreaks(t *testing.T) {
	t.Parallel()
	forEachMode(t, testLeaseReleasedWhenSessionBreaks)
}

func testLeaseReleasedWhenSessionBreaks(t *testing.T, mode leasemode.Mode) {
	p := newTestProvider(t)
	s := startProxy(t, Config{Provider: p})
	ctx := testContext(t)

	t.Run("upstream dies", func(t *testing.T) {
		c := connect(t, modeURL(s, mode, "app"))
		db := currentDatabase(t, c)
		admin := connect(t, testpg.AdminURL(t))
		if _, err := admin.Exec(ctx, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1", db); err != nil {
			t.Fatal(err)
		}
		_, err := c.Exec(ctx, "SELECT 1")
		wantSQLState(t, err, "57P01")
		waitFor(t, "lease of "+db+" released", func() bool { return released(p, db) })
	})
	t.Run("client vanishes", func(t *testing.T) {
		c := rawConn(t, s)
		fe := startRawMode(t, c, "app", mode)
		fe.SendQuery(&pgproto3.Query{String: "SELECT pg_sleep(60)"})
		if err := fe.Flush(); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "a sleeping session", func() bool { return p.liveCount() == 1 })
		db := p.liveNames()[0]
		waitSleeping(t, db)
		_ = c.(*net.TCPConn).SetLinger(0) // vanish with a reset
		_ = c.Close()
		waitFor(t, "lease of "+db+" released", func() bool { return released(p, db) })
	})
	if got := s.Stats().SessionsActive; got != 0 {
		t.Fatalf("%d sessions still active", got)
	}
}

func released(p *testProvider, db string) bool {
	for _, r := range p.releases() {
		if r.database == db {
			return true
		}
	}
	return false
}

// Bytes and sessions are counted.
func TestStatsCount(t *testing.T) {
	t.Parallel()
	p := newTestProvider(t)
	s := startProxy(t, Config{Provider: p})
	c := connect(t, proxyURL(s, "app"))
	var n int
	if err := c.QueryRow(testContext(t), "SELECT count(*) FROM items").Scan(&n); err != nil {
		t.Fatal(err)
	}
	st := s.Stats()
	if st.SessionsTotal != 1 || st.SessionsActive != 1 || st.LeasesTotal != 1 || st.LeasesActive != 1 ||
		st.BytesIn == 0 || st.BytesOut == 0 {
		t.Fatalf("stats %+v", st)
	}
	_ = c.Close(testContext(t))
	waitFor(t, "lease released", func() bool { return s.Stats().LeasesActive == 0 })
}
