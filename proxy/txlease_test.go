package proxy

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/pgtestproxy/pgtestproxy/internal/leasemode"
	"github.com/pgtestproxy/pgtestproxy/internal/testpg"
)

// leaseState is what one tx-mode lease leaves behind and the next must not see.
type leaseState struct {
	pid                  uint32
	rows                 int
	app, idleTimeout     string
	tempTable, prepared  bool
	advisoryLockElsewere bool
}

func readLeaseState(t *testing.T, ctx context.Context, c *pgx.Conn) leaseState {
	t.Helper()
	var st leaseState
	st.pid = c.PgConn().PID()
	err := c.QueryRow(ctx, `SELECT (SELECT count(*) FROM items), current_setting('application_name'),
		current_setting('idle_in_transaction_session_timeout'),
		to_regclass('pg_temp.scratch') IS NOT NULL,
		EXISTS (SELECT FROM pg_prepared_statements WHERE name = 'leaky'),
		EXISTS (SELECT FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid())`).
		Scan(&st.rows, &st.app, &st.idleTimeout, &st.tempTable, &st.prepared, &st.advisoryLockElsewere)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// A tx-mode lease ends with everything it did undone: rows, sequences (back to the
// template's values, including whether they were ever called), temporary tables,
// prepared statements, advisory locks and settings; the next lease of the same clone
// reuses the backend connection instead of starting one.
func TestTxLeaseEndResetsClone(t *testing.T) {
	t.Parallel()
	p := newTestProvider(t)
	s := startProxy(t, Config{Provider: p, Linger: -1})
	ctx := testContext(t)

	c := connect(t, proxyURL(s, "app", "mode=tx", "application_name=first"))
	db := currentDatabase(t, c)
	var pid uint32
	if err := c.QueryRow(ctx, "SELECT pg_backend_pid()").Scan(&pid); err != nil {
		t.Fatal(err)
	}
	for _, sql := range []string{
		"INSERT INTO items VALUES (4, 'four')", "SELECT nextval('fresh'), nextval('fresh'), nextval('used')",
		"CREATE TEMP TABLE scratch (v int)", "PREPARE leaky AS SELECT 1", "SELECT pg_advisory_lock(7)",
		"SET application_name = 'leaky'", "BEGIN", "INSERT INTO items VALUES (5, 'five')",
	} {
		if _, err := c.Exec(ctx, sql); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
	if st := readLeaseState(t, ctx, c); st.rows != 5 || !st.tempTable || !st.prepared || !st.advisoryLockElsewere || st.idleTimeout != "0" {
		t.Fatalf("first lease sees %+v", st)
	}
	_ = c.Close(ctx)
	waitFor(t, "first lease released", func() bool { return released(p, db) })

	c = connect(t, proxyURL(s, "app", "mode=tx", "application_name=first"))
	if got := currentDatabase(t, c); got != db {
		t.Fatalf("second lease got %s, want the first's clone %s back", got, db)
	}
	var fresh, used int64
	var backend uint32
	if err := c.QueryRow(ctx, "SELECT nextval('fresh'), nextval('used'), pg_backend_pid()").Scan(&fresh, &used, &backend); err != nil {
		t.Fatal(err)
	}
	if fresh != 100 || used != 43 {
		t.Errorf("sequences after the lease: fresh %d, used %d; want 100 and 43", fresh, used)
	}
	if backend != pid {
		t.Errorf("second lease runs on backend %d, want the kept backend %d", backend, pid)
	}
	st := readLeaseState(t, ctx, c)
	if st.rows != 3 || st.tempTable || st.prepared || st.advisoryLockElsewere || st.app != "first" {
		t.Errorf("second lease sees %+v", st)
	}
	for _, r := range p.releases() {
		if !r.clean {
			t.Errorf("lease of %s released unclean", r.database)
		}
	}
}

// A backend that was started with other startup parameters is not reused: the lease
// gets a fresh one with its own, and the clone is still reset.
func TestTxLeaseOtherParamsFreshBackend(t *testing.T) {
	t.Parallel()
	p := newTestProvider(t)
	s := startProxy(t, Config{Provider: p, Linger: -1})
	ctx := testContext(t)
	c := connect(t, proxyURL(s, "app", "mode=tx", "application_name=one"))
	db := currentDatabase(t, c)
	pid1 := backendPID(t, c)
	_ = c.Close(ctx)
	waitFor(t, "lease released", func() bool { return released(p, db) })
	c = connect(t, proxyURL(s, "app", "mode=tx", "application_name=two"))
	if backendPID(t, c) == pid1 {
		t.Error("a backend started for other parameters was reused")
	}
	var app string
	if err := c.QueryRow(ctx, "SHOW application_name").Scan(&app); err != nil || app != "two" {
		t.Errorf("application_name %q, %v", app, err)
	}
}

// A session whose backend dies retires its clone.
func TestTxLeaseRetiredWhenBackendDies(t *testing.T) {
	t.Parallel()
	p := newTestProvider(t)
	s := startProxy(t, Config{Provider: p, Linger: -1})
	ctx := testContext(t)
	c := connect(t, proxyURL(s, "app", "mode=tx"))
	db := currentDatabase(t, c)
	admin := connect(t, testpg.AdminURL(t))
	if _, err := admin.Exec(ctx, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1", db); err != nil {
		t.Fatal(err)
	}
	_, err := c.Exec(ctx, "SELECT 1")
	wantSQLState(t, err, "57P01")
	waitFor(t, "lease released", func() bool { return released(p, db) })
	for _, r := range p.releases() {
		if r.database == db && r.clean {
			t.Error("the lease of a dead backend was released clean")
		}
	}
}

func backendPID(t *testing.T, c *pgx.Conn) uint32 {
	t.Helper()
	var pid uint32
	if err := c.QueryRow(testContext(t), "SELECT pg_backend_pid()").Scan(&pid); err != nil {
		t.Fatal(err)
	}
	return pid
}

// Connections with the same session key share one transaction: what one committed
// (in its view) the next sees; what it left open is rolled back, and its temporary
// tables and settings are gone for a connection that comes after it.
func TestTxSessionKeySequential(t *testing.T) {
	t.Parallel()
	p := newTestProvider(t)
	s := startProxy(t, Config{Provider: p, Linger: 10 * time.Second})
	ctx := testContext(t)
	url := proxyURL(s, "app", "mode=tx", "session=seq")
	c := connect(t, url)
	for _, sql := range []string{"INSERT INTO items VALUES (4, 'four')", "CREATE TEMP TABLE scratch (v int)",
		"SET application_name = 'leaky'", "BEGIN", "INSERT INTO items VALUES (5, 'five')"} {
		if _, err := c.Exec(ctx, sql); err != nil {
			t.Fatal(err)
		}
	}
	_ = c.Close(ctx)
	// "After the connection left" is when the proxy has seen it leave: a connection that
	// arrives while the proxy still reads the previous one's Terminate joins it, as
	// connections open together do (a known race of reconnect-at-once, see the README).
	waitFor(t, "the first connection's session to end", func() bool { return s.Stats().SessionsActive == 0 })
	c = connect(t, url)
	st := readLeaseState(t, ctx, c)
	if st.rows != 4 || st.tempTable || st.app == "leaky" {
		t.Errorf("next connection of the session sees %+v", st)
	}
	// pgx prepares the same statement names on every connection.
	if err := c.QueryRow(ctx, "SELECT count(*) FROM items").Scan(&st.rows); err != nil {
		t.Fatal(err)
	}
}

// A client that leaves in the middle of a unit (no Sync yet) or of a COPY FROM STDIN
// leaves the lease clean: the proxy finishes what it started, and the next lease of
// the clone reuses the backend with nothing of it left.
func TestTxClientLeavesMidUnit(t *testing.T) {
	t.Parallel()
	p := newTestProvider(t)
	s := startProxy(t, Config{Provider: p, Linger: -1})
	for _, msgs := range [][]pgproto3.FrontendMessage{
		{parse("", "INSERT INTO items VALUES (4, 'four')"), bind("", ""), execM("")},
		{&pgproto3.Query{String: "COPY items FROM STDIN"}, &pgproto3.CopyData{Data: []byte("5\tfive\n")}},
		{&pgproto3.Query{String: "BEGIN"}, parse("", "COPY items FROM STDIN"), bind("", ""), execM(""), syncM()},
	} {
		c := rawConn(t, s)
		fe := startRawMode(t, c, "app", leasemode.Tx)
		for _, m := range msgs {
			fe.Send(m)
		}
		if err := fe.Flush(); err != nil {
			t.Fatal(err)
		}
		waitBackendRuns(t, p.liveNames(), msgs)
		n := len(p.releases())
		_ = c.Close()
		waitFor(t, "lease released", func() bool { return len(p.releases()) > n })
	}
	for _, r := range p.releases() {
		if !r.clean {
			t.Fatalf("lease of %s released unclean", r.database)
		}
	}
	c := connect(t, modeURL(s, leasemode.Tx, "app"))
	if st := readLeaseState(t, testContext(t), c); st.rows != 3 {
		t.Fatalf("next lease sees %d rows", st.rows)
	}
}

// waitBackendRuns waits until a backend of one of the databases shows the statement
// of the last Parse or Query in msgs as its query: the server has what the client sent.
func waitBackendRuns(t *testing.T, dbs []string, msgs []pgproto3.FrontendMessage) {
	t.Helper()
	var stmt string
	for _, m := range msgs {
		switch m := m.(type) {
		case *pgproto3.Parse:
			stmt = m.Query
		case *pgproto3.Query:
			stmt = m.String
		}
	}
	admin, err := pgx.Connect(testContext(t), testpg.AdminURL(t))
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close(context.Background())
	waitFor(t, "the server running "+stmt, func() bool {
		var n int
		_ = admin.QueryRow(testContext(t), "SELECT count(*) FROM pg_stat_activity WHERE datname = ANY($1) AND query = $2",
			dbs, stmt).Scan(&n)
		return n > 0
	})
}
