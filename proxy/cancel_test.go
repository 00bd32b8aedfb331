package proxy

import (
	"context"
	"crypto/rand"
	"errors"
	"io"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgconn/ctxwatch"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/pgtestproxy/pgtestproxy/internal/leasemode"
	"github.com/pgtestproxy/pgtestproxy/internal/testpg"
)

// sleepUntilCancelled runs a long pg_sleep on c in the background; the returned channel
// yields its error.
func sleepInBackground(c *pgconn.PgConn) <-chan error {
	done := make(chan error, 1)
	go func() {
		_, err := c.Exec(context.Background(), "SELECT pg_sleep(60)").ReadAll()
		done <- err
	}()
	return done
}

// waitSleeping waits until a pg_sleep runs in database db.
func waitSleeping(t *testing.T, db string) {
	t.Helper()
	admin, err := pgx.Connect(testContext(t), testpg.AdminURL(t))
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close(context.Background())
	waitFor(t, "pg_sleep running in "+db, func() bool {
		var n int
		_ = admin.QueryRow(testContext(t), "SELECT count(*) FROM pg_stat_activity WHERE datname = $1 AND query LIKE '%pg_sleep%' AND state = 'active'", db).Scan(&n)
		return n > 0
	})
}

func wantCancelled(t *testing.T, done <-chan error) {
	t.Helper()
	select {
	case err := <-done:
		wantSQLState(t, err, "57014")
	case <-time.After(30 * time.Second):
		t.Fatal("query was not cancelled")
	}
}

// pgx's context cancellation sends a CancelRequest to the proxy with the proxy's key;
// the proxy forwards it and the server cancels the query (57014 arrives well before
// pgx's own deadline fallback would cut the connection); the session goes on.
func TestCancelByContext(t *testing.T) {
	t.Parallel()
	forEachMode(t, testCancelByContext)
}

func testCancelByContext(t *testing.T, mode leasemode.Mode) {
	p := newTestProvider(t)
	s := startProxy(t, Config{Provider: p})
	cfg, err := pgx.ParseConfig(modeURL(s, mode, "app"))
	if err != nil {
		t.Fatal(err)
	}
	cfg.BuildContextWatcherHandler = func(pc *pgconn.PgConn) ctxwatch.Handler {
		return &pgconn.CancelRequestContextWatcherHandler{Conn: pc, DeadlineDelay: 30 * time.Second}
	}
	c, err := pgx.ConnectConfig(testContext(t), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(context.Background())
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err = c.Exec(ctx, "SELECT pg_sleep(60)")
	if time.Since(start) > 20*time.Second {
		t.Fatalf("query ran %s: %v", time.Since(start), err)
	}
	wantSQLState(t, err, "57014")
	if s.Stats().Cancels != 1 {
		t.Fatalf("%d cancel requests forwarded, want 1", s.Stats().Cancels)
	}
	var n int
	if err := c.QueryRow(testContext(t), "SELECT count(*) FROM items").Scan(&n); err != nil || n != 3 {
		t.Fatalf("after the cancel: %d, %v", n, err)
	}
}

// A raw CancelRequest (pgconn's, as libpq and psql send it) with the proxy-issued key
// cancels that session's query and nothing else; also after SSL negotiation. In db
// mode both sessions share a database through a session key; in tx mode connections
// of one key take turns on the backend (TestTxSharedCancel), so these have a lease
// each.
func TestCancelRequest(t *testing.T) {
	t.Parallel()
	forEachMode(t, testCancelRequest)
}

func testCancelRequest(t *testing.T, mode leasemode.Mode) {
	p := newTestProvider(t)
	s := startProxy(t, Config{Provider: p})
	ctx := testContext(t)
	url := modeURL(s, mode, "app")
	if mode == leasemode.DB {
		url = modeURL(s, mode, "app", "session=cancel")
	}
	open := func() *pgconn.PgConn {
		c, err := pgconn.Connect(ctx, url)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.Close(context.Background()) })
		return c
	}
	victim, bystander := open(), open()
	victimDone := sleepInBackground(victim)
	bystanderDone := sleepInBackground(bystander)
	for _, db := range p.liveNames() {
		waitSleeping(t, db)
	}

	// An unknown key is ignored silently: the connection just closes.
	raw := rawConn(t, s)
	secret := make([]byte, 4)
	_, _ = rand.Read(secret)
	if _, err := raw.Write(encode(t, &pgproto3.CancelRequest{ProcessID: victim.PID() ^ 1, SecretKey: secret})); err != nil {
		t.Fatal(err)
	}
	if b, err := io.ReadAll(raw); err != nil || len(b) != 0 {
		t.Fatalf("unknown cancel key answered %q, %v", b, err)
	}

	if err := victim.CancelRequest(ctx); err != nil {
		t.Fatal(err)
	}
	wantCancelled(t, victimDone)
	select {
	case err := <-bystanderDone:
		t.Fatalf("cancelling one session ended another's query: %v", err)
	default:
	}

	// The same after an SSLRequest answered 'N', as libpq does with sslmode=prefer.
	raw = rawConn(t, s)
	if _, err := raw.Write(encode(t, &pgproto3.SSLRequest{})); err != nil {
		t.Fatal(err)
	}
	var b [1]byte
	if _, err := io.ReadFull(raw, b[:]); err != nil || b[0] != 'N' {
		t.Fatalf("SSLRequest answered %q, %v", b[0], err)
	}
	if _, err := raw.Write(encode(t, &pgproto3.CancelRequest{ProcessID: bystander.PID(), SecretKey: bystander.SecretKey()})); err != nil {
		t.Fatal(err)
	}
	wantCancelled(t, bystanderDone)
}

// psql's Ctrl-C sends a CancelRequest with the key the proxy issued.
func TestCancelPsql(t *testing.T) {
	t.Parallel()
	psql := testpg.Psql(t)
	forEachMode(t, func(t *testing.T, mode leasemode.Mode) { testCancelPsql(t, psql, mode) })
}

func testCancelPsql(t *testing.T, psql string, mode leasemode.Mode) {
	p := newTestProvider(t)
	s := startProxy(t, Config{Provider: p})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, psql, "-X", "-c", "SELECT pg_sleep(60)", proxyURL(s, "app"))
	cmd.Env = append(cmd.Environ(), "PGOPTIONS=-c pgtestproxy.mode="+string(mode))
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "psql's lease", func() bool { return p.liveCount() == 1 })
	waitSleeping(t, p.liveNames()[0])
	if err := cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	err := cmd.Wait()
	var exitErr *exec.ExitError
	if !errors.As(err, &exitErr) || !strings.Contains(out.String(), "canceling statement due to user request") {
		t.Fatalf("psql after Ctrl-C: %v\n%s", err, out.String())
	}
}
