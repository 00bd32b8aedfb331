package proxy

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgtestproxy/pgtestproxy/internal/leasemode"
)

// waitNotification waits for c's next notification, or fails the test.
func waitNotification(t *testing.T, c *pgx.Conn) *pgconn.Notification {
	t.Helper()
	ctx, cancel := context.WithTimeout(testContext(t), 20*time.Second)
	defer cancel()
	n, err := c.WaitForNotification(ctx)
	if err != nil {
		t.Fatalf("wait for a notification: %v", err)
	}
	return n
}

func mustExec(t *testing.T, c *pgx.Conn, sql string, args ...any) {
	t.Helper()
	if _, err := c.Exec(testContext(t), sql, args...); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

// A NOTIFY on a tx-mode lease reaches the lease's other connection that LISTENs, once
// the notifier's unit or block commits in its view: a rolled-back block and a failed
// autocommit unit deliver nothing, and duplicates in one transaction are folded.
// The notification carries the backend's real PID.
func TestTxNotifyBetweenConnections(t *testing.T) {
	t.Parallel()
	p := newTestProvider(t)
	s := startProxy(t, Config{Provider: p})
	url := modeURL(s, leasemode.Tx, "app", "session=notify-between")
	listener, notifier := connect(t, url), connect(t, url)
	mustExec(t, listener, "LISTEN events")
	mustExec(t, listener, `LISTEN "Other"`)

	mustExec(t, notifier, "BEGIN")
	mustExec(t, notifier, "NOTIFY events, 'rolled back'")
	mustExec(t, notifier, "ROLLBACK")
	if _, err := notifier.Exec(testContext(t), "NOTIFY events, 'failed unit'; SELECT 1/0"); err == nil {
		t.Fatal("1/0 succeeded")
	}
	mustExec(t, notifier, "NOTIFY unheard, 'nobody listens'")
	mustExec(t, notifier, "BEGIN")
	mustExec(t, notifier, "NOTIFY events, 'a'")
	mustExec(t, notifier, "SELECT pg_catalog.pg_sleep(0)") // the block goes on; nothing is delivered yet
	mustExec(t, notifier, "NOTIFY events, 'a'")
	mustExec(t, notifier, `NOTIFY "Other", 'b'`)
	mustExec(t, notifier, "SAVEPOINT s1")
	mustExec(t, notifier, "NOTIFY events, 'after s1'")
	mustExec(t, notifier, "SAVEPOINT s2")
	mustExec(t, notifier, "NOTIFY events, 'after s2'")
	mustExec(t, notifier, "ROLLBACK TO SAVEPOINT s1") // undoes both
	mustExec(t, notifier, "SAVEPOINT s3")
	mustExec(t, notifier, "NOTIFY events")
	mustExec(t, notifier, "RELEASE s3") // kept
	mustExec(t, notifier, "COMMIT")
	mustExec(t, notifier, "NOTIFY events, 'extended'", pgx.QueryExecModeDescribeExec)
	mustExec(t, notifier, "NOTIFY events, 'a'") // a new transaction: delivered again

	var pid uint32
	if err := notifier.QueryRow(testContext(t), "SELECT pg_backend_pid()").Scan(&pid); err != nil {
		t.Fatal(err)
	}
	want := []pgconn.Notification{{Channel: "events", Payload: "a"}, {Channel: "Other", Payload: "b"},
		{Channel: "events", Payload: ""}, {Channel: "events", Payload: "extended"}, {Channel: "events", Payload: "a"}}
	for i, w := range want {
		n := waitNotification(t, listener)
		if n.Channel != w.Channel || n.Payload != w.Payload || n.PID != pid {
			t.Fatalf("notification %d: got %+v, want %+v from PID %d", i, *n, w, pid)
		}
	}
	if got := listener.PgConn().PID(); got != pid {
		t.Fatalf("the listener's PID is %d, the backend's %d", got, pid)
	}

	// UNLISTEN stops them; the notifier's own LISTEN is its own.
	mustExec(t, listener, "UNLISTEN events")
	mustExec(t, notifier, "LISTEN mine")
	mustExec(t, notifier, "NOTIFY events, 'unheard'; NOTIFY \"Other\", 'last'; NOTIFY mine, 'to the notifier'")
	if n := waitNotification(t, listener); n.Channel != "Other" || n.Payload != "last" {
		t.Fatalf("after UNLISTEN events: got %+v", *n)
	}
	if n := waitNotification(t, notifier); n.Channel != "mine" || n.Payload != "to the notifier" {
		t.Fatalf("the notifier got %+v", *n)
	}
}

// pgx's TestListenNotifySelfNotification: LISTEN then NOTIFY on the same connection;
// the notification arrives after the unit, also when the LISTEN is in the same block.
func TestTxNotifySelf(t *testing.T) {
	t.Parallel()
	p := newTestProvider(t)
	s := startProxy(t, Config{Provider: p})
	conn := connect(t, modeURL(s, leasemode.Tx, "app"))
	mustExec(t, conn, "LISTEN self")
	mustExec(t, conn, "NOTIFY self")
	if n := waitNotification(t, conn); n.Channel != "self" || n.PID != conn.PgConn().PID() {
		t.Fatalf("got %+v, PID %d", *n, conn.PgConn().PID())
	}

	// In a block: LISTEN and NOTIFY take effect at COMMIT; a ROLLBACK undoes a LISTEN.
	mustExec(t, conn, "BEGIN; LISTEN rolled; ROLLBACK")
	mustExec(t, conn, "NOTIFY rolled, 'unheard'")
	mustExec(t, conn, "BEGIN; LISTEN blockself; NOTIFY blockself, 'x'; COMMIT")
	if n := waitNotification(t, conn); n.Channel != "blockself" || n.Payload != "x" {
		t.Fatalf("got %+v", *n)
	}
}

// pgconn's OnNotification hears a notification from another connection of the same
// key while it waits for its next reply, and its own NOTIFY before the ReadyForQuery
// of the unit.
func TestTxNotifyOnNotification(t *testing.T) {
	t.Parallel()
	p := newTestProvider(t)
	s := startProxy(t, Config{Provider: p})
	ctx := testContext(t)
	url := modeURL(s, leasemode.Tx, "app", "session=notify-pgconn")
	cfg, err := pgconn.ParseConfig(url)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var got []string
	cfg.OnNotification = func(_ *pgconn.PgConn, n *pgconn.Notification) {
		mu.Lock()
		defer mu.Unlock()
		got = append(got, n.Payload)
	}
	pc, err := pgconn.ConnectConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close(context.Background())
	exec := func(sql string) {
		t.Helper()
		if _, err := pc.Exec(ctx, sql).ReadAll(); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
	exec("LISTEN foo")
	other := connect(t, url)
	mustExec(t, other, "NOTIFY foo, 'bar'")
	exec("SELECT 1") // sent after the notification was delivered: it comes first
	mu.Lock()
	if len(got) != 1 || got[0] != "bar" {
		t.Fatalf("OnNotification got %q after the other connection's NOTIFY", got)
	}
	mu.Unlock()
	exec("NOTIFY foo, 'self'")
	mu.Lock()
	defer mu.Unlock()
	if len(got) != 2 || got[1] != "self" {
		t.Fatalf("OnNotification got %q after the connection's own NOTIFY", got)
	}
}

// A client statement that calls pg_notify and nothing else, with constants or
// parameters, is delivered as NOTIFY is: at the commit in the client's view, with its
// payload and the backend's PID; a rolled-back one delivers nothing.
func TestTxPgNotify(t *testing.T) {
	t.Parallel()
	s := startProxy(t, Config{Provider: newTestProvider(t)})
	url := modeURL(s, leasemode.Tx, "app", "session=pg-notify")
	listener, notifier := connect(t, url), connect(t, url)
	mustExec(t, listener, "LISTEN events")

	mustExec(t, notifier, "BEGIN")
	mustExec(t, notifier, "SELECT pg_notify('events', 'rolled back')")
	mustExec(t, notifier, "ROLLBACK")
	mustExec(t, notifier, "SELECT pg_notify('events', 'constant')")                 // simple protocol
	mustExec(t, notifier, "SELECT pg_notify($1, $2)", "events", "parameters")       // extended
	mustExec(t, notifier, "select PG_CATALOG.pg_notify('events', $1::text); ", "x") // one unit, then:
	mustExec(t, notifier, "BEGIN")
	mustExec(t, notifier, "SELECT pg_catalog.pg_notify('events', $1)", "in a block")
	mustExec(t, notifier, "COMMIT")

	pid := backendPID(t, notifier)
	for i, want := range []string{"constant", "parameters", "x", "in a block"} {
		n := waitNotification(t, listener)
		if n.Channel != "events" || n.Payload != want || n.PID != pid {
			t.Fatalf("notification %d: got %+v, want %q from PID %d", i, *n, want, pid)
		}
	}
}
