package proxy

import (
	"context"
	"errors"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"
	"go.uber.org/zap/zaptest/observer"

	"github.com/pgtestproxy/pgtestproxy/internal/leasemode"
)

// Close refuses new clients with 57P01, lets sessions that end within the grace end,
// then cuts the rest with a FATAL 57P01 (idle or waiting for a query alike), says how
// many it cut, and releases every lease.
func TestShutdownWithOpenSessions(t *testing.T) {
	t.Parallel()
	forEachMode(t, testShutdownWithOpenSessions)
}

func testShutdownWithOpenSessions(t *testing.T, mode leasemode.Mode) {
	p := newTestProvider(t)
	core, logs := observer.New(zap.InfoLevel)
	s, err := New(Config{Provider: p, Addr: "127.0.0.1:0", ShutdownGrace: 3 * time.Second, Logger: zap.New(core)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { noPanics(t, s) })
	served := make(chan error, 1)
	go func() { served <- s.Serve(context.Background()) }()
	ctx := testContext(t)

	idle := connect(t, modeURL(s, mode, "app"))
	leaving := connect(t, modeURL(s, mode, "app"))
	busy := connect(t, modeURL(s, mode, "app", "session=busy"))
	busyDB := currentDatabase(t, busy)
	busyDone := make(chan error, 1)
	go func() {
		_, err := busy.Exec(context.Background(), "SELECT pg_sleep(60)")
		busyDone <- err
	}()
	waitSleeping(t, busyDB)
	admin := connect(t, proxyURL(s, adminDatabase, "default_query_exec_mode=simple_protocol"))

	closed := make(chan error, 1)
	go func() { closed <- s.Close() }()
	waitFor(t, "shutdown to start", s.shutting.Load)
	_, err = pgx.Connect(ctx, proxyURL(s, "app"))
	wantSQLState(t, err, "57P01")
	if err := leaving.Close(ctx); err != nil { // ends within the grace
		t.Fatal(err)
	}
	waitFor(t, "the leaving session to end", func() bool { return s.Stats().SessionsActive == 3 })

	if err := <-closed; err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := <-served; err != nil {
		t.Fatalf("Serve: %v", err)
	}
	wantSQLState(t, <-busyDone, "57P01")
	_, err = idle.Exec(ctx, "SELECT 1")
	wantSQLState(t, err, "57P01")
	_, _, err = queryStrings(ctx, admin, "SHOW VERSION")
	wantSQLState(t, err, "57P01")

	if n := p.liveCount(); n != 0 {
		t.Fatalf("%d leases still held after Close", n)
	}
	cut := logs.FilterMessageSnippet("cut open connections").All()
	if len(cut) != 1 || cut[0].ContextMap()["connections"] != int64(3) {
		t.Fatalf("shutdown logged %v, want one entry cutting 3 connections", cut)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if err := s.Serve(context.Background()); !errors.Is(err, ErrServerClosed) {
		t.Fatalf("Serve after Close: %v", err)
	}
}

// Cancelling Serve's context shuts down like Close; Close before Serve just closes.
func TestServeContextAndEarlyClose(t *testing.T) {
	t.Parallel()
	s, err := New(Config{Provider: &testProvider{t: t}, Addr: "127.0.0.1:0", ShutdownGrace: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { noPanics(t, s) })
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- s.Serve(ctx) }()
	c := connect(t, proxyURL(s, adminDatabase))
	cancel()
	if err := <-served; err != nil {
		t.Fatal(err)
	}
	if !c.IsClosed() {
		_, err := c.Exec(testContext(t), "SHOW VERSION", pgx.QueryExecModeSimpleProtocol)
		if err == nil {
			t.Fatal("session survived Serve's end")
		}
	}
	_ = s.Close()

	early, err := New(Config{Provider: &testProvider{t: t}, Addr: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { noPanics(t, early) })
	if err := early.Close(); err != nil {
		t.Fatal(err)
	}
	if err := early.Serve(context.Background()); !errors.Is(err, ErrServerClosed) {
		t.Fatalf("Serve after Close: %v", err)
	}
}

// After Close returns, no goroutine of the proxy is left, whatever was open: relay
// and tx-mode sessions, lingering shared leases, the admin console, a client stuck in
// start-up.
// Not parallel, so that no other test's proxy runs meanwhile.
func TestNoGoroutinesLeftAfterShutdown(t *testing.T) {
	if n := proxyGoroutines(); n != "" {
		t.Fatalf("proxy goroutines before the test:\n%s", n)
	}
	p := newTestProvider(t)
	s, err := New(Config{Provider: p, Addr: "127.0.0.1:0", ShutdownGrace: -1, Linger: time.Minute, Logger: zaptest.NewLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { noPanics(t, s) })
	served := make(chan error, 1)
	go func() { served <- s.Serve(context.Background()) }()
	ctx := testContext(t)
	relay := connect(t, proxyURL(s, "app"))
	if _, err := relay.Exec(ctx, "SELECT 1"); err != nil {
		t.Fatal(err)
	}
	tx := connect(t, modeURL(s, leasemode.Tx, "app"))
	if _, err := tx.Exec(ctx, "BEGIN"); err != nil {
		t.Fatal(err)
	}
	for _, mode := range leaseModes {
		lingering := connect(t, modeURL(s, mode, "app", "session=linger"))
		_ = lingering.Close(ctx)
	}
	connect(t, proxyURL(s, adminDatabase))
	stuck := rawConn(t, s)
	_, _ = stuck.Write([]byte{0, 0}) // half a length word
	waitFor(t, "sessions open", func() bool { return s.Stats().SessionsActive == 3 })

	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-served; err != nil {
		t.Fatal(err)
	}
	if n := p.liveCount(); n != 0 {
		t.Fatalf("%d leases held after Close", n)
	}
	deadline := time.Now().Add(10 * time.Second)
	for leaked := proxyGoroutines(); leaked != ""; leaked = proxyGoroutines() {
		if time.Now().After(deadline) {
			t.Fatalf("goroutines left after Close:\n%s", leaked)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// proxyGoroutines returns the stacks of goroutines running code of package proxy
// (not its tests).
func proxyGoroutines() string {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	var leaked []string
	for _, g := range strings.Split(string(buf), "\n\n") {
		for _, line := range strings.Split(g, "\n") {
			line = strings.TrimSpace(line)
			if strings.Contains(line, "/proxy/") && strings.Contains(line, ".go:") && !strings.Contains(line, "_test.go") {
				leaked = append(leaked, g)
				break
			}
		}
	}
	return strings.Join(leaked, "\n\n")
}
