package proxy

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/url"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/pgtestproxy/pgtestproxy/internal/leasemode"
	"github.com/pgtestproxy/pgtestproxy/internal/testpg"
)

func TestMain(m *testing.M) { os.Exit(testpg.Main(m)) }

// testTimeout bounds every test's client calls.
const testTimeout = time.Minute

func testContext(t testing.TB) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	t.Cleanup(cancel)
	return ctx
}

// newTemplate creates a small template database for t: table items with three rows,
// a sequence never used (fresh) and one used up to 42 (used).
func newTemplate(t testing.TB) string {
	t.Helper()
	dbURL, name := testpg.NewDatabase(t)
	testpg.Exec(t, dbURL, `CREATE TABLE items (id int PRIMARY KEY, name text NOT NULL);
		INSERT INTO items VALUES (1, 'one'), (2, 'two'), (3, 'three');
		CREATE SEQUENCE fresh START 100; CREATE SEQUENCE used; SELECT setval('used', 42);`)
	return name
}

// sqlStateError is a provider error with a SQLSTATE, as the pool's are.
type sqlStateError struct{ code, msg string }

func (e *sqlStateError) Error() string    { return e.msg }
func (e *sqlStateError) SQLState() string { return e.code }

// testProvider leases a fresh clone (CREATE DATABASE … TEMPLATE) of a test template
// per db-mode Acquire and drops it on Release. A tx-mode lease, released clean, goes
// back to a free list with the backend the proxy kept in it, and the next tx-mode
// Acquire of the template takes it again, as the pool does.
type testProvider struct {
	t         testing.TB
	templates map[string]string // database name asked for → template database
	// connConfig, when set, replaces the clone's connection config (to point the
	// proxy at an unreachable upstream).
	connConfig func(db string) *pgconn.Config
	// acquireErr, when set, is returned by Acquire.
	acquireErr error
	// releaseGate, when set, holds every Release until it is closed; releasing counts
	// the Releases holding.
	releaseGate chan struct{}
	releasing   atomic.Int32

	mu       sync.Mutex
	requests []LeaseRequest
	live     map[string]bool // clones leased and not released
	released []releaseRecord
	free     map[string][]*testLease // tx-mode clones released clean, by template
	prefix   string                  // of the clones' names
	clones   int                     // clones made
	admin    string                  // the server's maintenance database
	errs     []error                 // dropping clones failed; reported at cleanup
}

type releaseRecord struct {
	database string
	clean    bool
}

func newTestProvider(t testing.TB) *testProvider {
	t.Helper()
	p := &testProvider{t: t, templates: map[string]string{"app": newTemplate(t)}, live: map[string]bool{},
		prefix: testpg.UniqueName(t, "c_"), admin: testpg.AdminURL(t)}
	t.Cleanup(func() {
		p.mu.Lock()
		defer p.mu.Unlock()
		for _, err := range p.errs {
			t.Error(err)
		}
		for db := range p.live {
			t.Errorf("lease of %s never released", db)
			dropDatabase(t, db)
		}
		for _, ls := range p.free {
			for _, l := range ls {
				if l.keep != nil {
					_ = l.keep.Close()
				}
				dropDatabase(t, l.name)
			}
		}
	})
	return p
}

func (p *testProvider) Acquire(ctx context.Context, req LeaseRequest) (Lease, error) {
	p.mu.Lock()
	p.requests = append(p.requests, req)
	err := p.acquireErr
	p.mu.Unlock()
	if err != nil {
		return nil, err
	}
	tpl, ok := p.templates[req.Database]
	if !ok {
		return nil, &sqlStateError{"3D000", fmt.Sprintf("unknown template %q (known: %s)",
			req.Database, strings.Join(slices.Sorted(maps.Keys(p.templates)), ", "))}
	}
	if l := p.takeFree(req); l != nil {
		return l, nil
	}
	p.mu.Lock()
	p.clones++
	name := fmt.Sprintf("%s_%d", p.prefix, p.clones)
	p.mu.Unlock()
	c, err := pgx.Connect(ctx, p.admin)
	if err != nil {
		return nil, err
	}
	defer c.Close(context.Background())
	if _, err := c.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()+" TEMPLATE "+pgx.Identifier{tpl}.Sanitize()); err != nil {
		return nil, fmt.Errorf("clone %s from %s: %w", name, tpl, err)
	}
	p.mu.Lock()
	p.live[name] = true
	p.mu.Unlock()
	return &testLease{p: p, name: name, req: req}, nil
}

// takeFree returns a free tx-mode clone of the template, with what its last lease
// kept, or nil.
func (p *testProvider) takeFree(req LeaseRequest) *testLease {
	if req.Mode != leasemode.Tx {
		return nil
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	free := p.free[req.Database]
	if len(free) == 0 {
		return nil
	}
	old := free[len(free)-1]
	p.free[req.Database] = free[:len(free)-1]
	p.live[old.name] = true
	return &testLease{p: p, name: old.name, req: req, kept: old.keep}
}

func (p *testProvider) acquired() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.requests)
}

func (p *testProvider) releases() []releaseRecord {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.released)
}

func (p *testProvider) liveCount() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.live)
}

type testLease struct {
	p    *testProvider
	name string
	req  LeaseRequest

	mu         sync.Mutex
	kept, keep *KeptBackend
}

func (l *testLease) Keep(c *KeptBackend) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.keep = c
}

func (l *testLease) Kept() *KeptBackend {
	l.mu.Lock()
	defer l.mu.Unlock()
	k := l.kept
	l.kept = nil
	return k
}

func (l *testLease) ConnConfig() *pgconn.Config {
	if l.p.connConfig != nil {
		return l.p.connConfig(l.name)
	}
	cfg, err := pgconn.ParseConfig(dbURL(l.p.admin, l.name))
	if err != nil {
		panic(err)
	}
	return cfg
}

func (l *testLease) Database() string { return l.name }

func (l *testLease) Release(ctx context.Context, clean bool) {
	if l.p.releaseGate != nil {
		l.p.releasing.Add(1)
		<-l.p.releaseGate
		l.p.releasing.Add(-1)
	}
	l.mu.Lock()
	kept, keep := l.kept, l.keep
	l.mu.Unlock()
	if kept != nil {
		_ = kept.Close()
	}
	reuse := clean && l.req.Mode == leasemode.Tx
	if !reuse {
		if keep != nil {
			_ = keep.Close()
		}
		if err := dropDB(l.p.admin, l.name); err != nil {
			l.p.mu.Lock()
			l.p.errs = append(l.p.errs, err)
			l.p.mu.Unlock()
		}
	}
	l.p.mu.Lock()
	defer l.p.mu.Unlock()
	delete(l.p.live, l.name)
	l.p.released = append(l.p.released, releaseRecord{database: l.name, clean: clean})
	if reuse {
		if l.p.free == nil {
			l.p.free = map[string][]*testLease{}
		}
		l.p.free[l.req.Database] = append(l.p.free[l.req.Database], &testLease{name: l.name, keep: keep})
	}
}

func dropDatabase(t testing.TB, name string) {
	if err := dropDB(testpg.AdminURL(t), name); err != nil {
		t.Error(err)
	}
}

// dropDB drops database name through the maintenance database at admin.
func dropDB(admin, name string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := pgx.Connect(ctx, admin)
	if err != nil {
		return fmt.Errorf("drop %s: %w", name, err)
	}
	defer c.Close(ctx)
	if _, err := c.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)"); err != nil {
		return fmt.Errorf("drop %s: %w", name, err)
	}
	return nil
}

// dbURL is the URL of database db on the server of the maintenance URL admin.
func dbURL(admin, db string) string {
	u, err := url.Parse(admin)
	if err != nil {
		panic(err)
	}
	u.Path = "/" + db
	return u.String()
}

// startProxy runs a proxy on an ephemeral loopback port until the test ends.
func startProxy(t testing.TB, cfg Config) *Server {
	t.Helper()
	if cfg.Addr == "" && cfg.Listener == nil {
		cfg.Addr = "127.0.0.1:0"
	}
	if cfg.Logger == nil {
		cfg.Logger = zaptest.NewLogger(t)
	}
	s, err := New(cfg)
	if err != nil {
		t.Fatalf("new proxy: %v", err)
	}
	served := make(chan error, 1)
	go func() { served <- s.Serve(context.Background()) }()
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("close proxy: %v", err)
		}
		if err := <-served; err != nil {
			t.Errorf("serve: %v", err)
		}
		if cfg.panicHook == nil { // a test that injects panics counts them itself
			noPanics(t, s)
		}
	})
	return s
}

// noPanics fails the test if s recovered a panic: every panic is a bug.
func noPanics(t testing.TB, s *Server) {
	t.Helper()
	if n := s.Stats().Panics; n != 0 {
		t.Errorf("the proxy recovered %d panics (see the log)", n)
	}
}

// proxyURL is a client URL for database db through s, with extra query parameters.
func proxyURL(s *Server, db string, query ...string) string {
	u := url.URL{Scheme: "postgres", User: url.User("tester"), Host: s.Addr().String(), Path: "/" + db,
		RawQuery: strings.Join(append([]string{"sslmode=disable"}, query...), "&")}
	return u.String()
}

// connect opens a pgx connection, closed when the test ends.
func connect(t testing.TB, connString string) *pgx.Conn {
	t.Helper()
	ctx := testContext(t)
	c, err := pgx.Connect(ctx, connString)
	if err != nil {
		t.Fatalf("connect %s: %v", connString, err)
	}
	t.Cleanup(func() { _ = c.Close(context.Background()) })
	return c
}

func currentDatabase(t testing.TB, c *pgx.Conn) string {
	t.Helper()
	var db string
	if err := c.QueryRow(testContext(t), "SELECT current_database()").Scan(&db); err != nil {
		t.Fatalf("current_database: %v", err)
	}
	return db
}

// wantSQLState fails t unless err is a PostgreSQL error with code.
func wantSQLState(t testing.TB, err error, code string) *pgconn.PgError {
	t.Helper()
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) {
		t.Fatalf("want error with SQLSTATE %s, got %v", code, err)
	}
	if pgErr.Code != code {
		t.Fatalf("want SQLSTATE %s, got %s: %s", code, pgErr.Code, pgErr.Message)
	}
	return pgErr
}

// rawConn dials the proxy for a test that speaks the protocol by hand.
func rawConn(t testing.TB, s *Server) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", s.Addr().String(), 5*time.Second)
	if err != nil {
		t.Fatalf("dial proxy: %v", err)
	}
	_ = c.SetDeadline(time.Now().Add(30 * time.Second))
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func encode(t testing.TB, msg pgproto3.FrontendMessage) []byte {
	t.Helper()
	b, err := msg.Encode(nil)
	if err != nil {
		t.Fatalf("encode %T: %v", msg, err)
	}
	return b
}

// readFatal reads backend messages until an ErrorResponse and returns it.
func readFatal(t testing.TB, c net.Conn) *pgproto3.ErrorResponse {
	t.Helper()
	fe := pgproto3.NewFrontend(c, c)
	for {
		msg, err := fe.Receive()
		if err != nil {
			t.Fatalf("want ErrorResponse, got %v", err)
		}
		if e, ok := msg.(*pgproto3.ErrorResponse); ok {
			return e
		}
	}
}

// waitFor polls cond until it holds or the test's deadline nears.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (p *testProvider) liveNames() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Sorted(maps.Keys(p.live))
}

// startRaw completes a trust start-up on c by hand and returns the frontend.
func startRaw(t testing.TB, c net.Conn, db string) *pgproto3.Frontend {
	t.Helper()
	return startRawMode(t, c, db, "")
}

// startRawMode is startRaw asking for a lease mode ("" for the default).
func startRawMode(t testing.TB, c net.Conn, db string, mode leasemode.Mode) *pgproto3.Frontend {
	t.Helper()
	params := map[string]string{"user": "raw", "database": db}
	if mode != "" {
		params["mode"] = string(mode)
	}
	if _, err := c.Write(encode(t, &pgproto3.StartupMessage{ProtocolVersion: pgproto3.ProtocolVersion30,
		Parameters: params})); err != nil {
		t.Fatal(err)
	}
	fe := pgproto3.NewFrontend(c, c)
	for {
		msg, err := fe.Receive()
		if err != nil {
			t.Fatal(err)
		}
		switch m := msg.(type) {
		case *pgproto3.ErrorResponse:
			t.Fatalf("start-up: %s %s", m.Code, m.Message)
		case *pgproto3.ReadyForQuery:
			return fe
		}
	}
}

func nopLogger() *zap.Logger { return zap.NewNop() }

var _ BackendKeeper = (*testLease)(nil)

// waitBytesIn waits until the proxy read more client bytes than before: a message a
// client sent meanwhile reached it.
func waitBytesIn(t testing.TB, s *Server, before int64) {
	t.Helper()
	waitFor(t, "a client message reaching the proxy", func() bool { return s.Stats().BytesIn > before })
}
