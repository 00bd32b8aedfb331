package proxy

import (
	"encoding/binary"
	"io"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
)

// backendTap relays the proxy's backend connections to the real server and records the
// SQL of every Query and Parse the proxy sends.
type backendTap struct {
	mu  sync.Mutex
	sql []string
}

// tapBackends points p's clones' connections at a relay to the server and returns
// what it records.
func tapBackends(t *testing.T, p *testProvider) *backendTap {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	tap := &backendTap{}
	admin, err := pgconn.ParseConfig(p.admin)
	if err != nil {
		t.Fatal(err)
	}
	target := net.JoinHostPort(admin.Host, strconv.Itoa(int(admin.Port)))
	p.connConfig = func(db string) *pgconn.Config {
		cfg, err := pgconn.ParseConfig(dbURL(p.admin, db))
		if err != nil {
			panic(err)
		}
		cfg.Host, cfg.Port = "127.0.0.1", uint16(ln.Addr().(*net.TCPAddr).Port)
		cfg.Fallbacks = nil
		return cfg
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go tap.relay(c, target)
		}
	}()
	return tap
}

// relay copies one connection both ways, reading the client's side message by message.
func (tp *backendTap) relay(c net.Conn, target string) {
	defer c.Close()
	s, err := net.Dial("tcp", target)
	if err != nil {
		return
	}
	defer s.Close()
	go func() { _, _ = io.Copy(c, s); c.Close() }()
	// Untyped frames first: SSLRequest (answered by the server), then the startup.
	for {
		var hdr [8]byte
		if _, err := io.ReadFull(c, hdr[:]); err != nil {
			return
		}
		n := int(binary.BigEndian.Uint32(hdr[:4]))
		rest := make([]byte, n-8)
		if _, err := io.ReadFull(c, rest); err != nil {
			return
		}
		if _, err := s.Write(append(hdr[:], rest...)); err != nil {
			return
		}
		if code := binary.BigEndian.Uint32(hdr[4:]); code != 80877103 && code != 80877104 {
			break // not SSLRequest or GSSENCRequest: the startup
		}
	}
	for {
		var hdr [5]byte
		if _, err := io.ReadFull(c, hdr[:]); err != nil {
			return
		}
		body := make([]byte, int(binary.BigEndian.Uint32(hdr[1:]))-4)
		if _, err := io.ReadFull(c, body); err != nil {
			return
		}
		switch hdr[0] {
		case 'Q':
			tp.note(cut(body))
		case 'P':
			if _, rest, ok := strings.Cut(string(body), "\x00"); ok {
				tp.note(cut([]byte(rest)))
			}
		}
		if _, err := s.Write(append(hdr[:], body...)); err != nil {
			return
		}
	}
}

func cut(b []byte) string {
	s, _, _ := strings.Cut(string(b), "\x00")
	return s
}

func (tp *backendTap) note(sql string) {
	tp.mu.Lock()
	defer tp.mu.Unlock()
	tp.sql = append(tp.sql, sql)
}

// count is how often sub occurs in the SQL recorded since mark (an index of a
// previous len).
func (tp *backendTap) count(sub string, mark int) int {
	tp.mu.Lock()
	defer tp.mu.Unlock()
	n := 0
	for _, s := range tp.sql[mark:] {
		n += strings.Count(s, sub)
	}
	return n
}

func (tp *backendTap) len() int {
	tp.mu.Lock()
	defer tp.mu.Unlock()
	return len(tp.sql)
}

// A unit of Parse and Describe alone (pgx prepares each new statement so, before its
// Bind and Execute) changes nothing a rollback would undo: it leaves the proxy's
// savepoint clean, and the unit after it runs without a RELEASE + SAVEPOINT pair of its
// own. Two new statements through pgx, the first of which writes: one pair, at the
// second's prepare (it was three: one before each unit but the lease's first).
func TestTxPrepareUnitLeavesSavepointClean(t *testing.T) {
	t.Parallel()
	p := newTestProvider(t)
	tap := tapBackends(t, p)
	s := startProxy(t, Config{Provider: p, Linger: -1})
	ctx := testContext(t)
	c := connect(t, proxyURL(s, "app", "mode=tx"))
	mark := tap.len()
	if _, err := c.Exec(ctx, "INSERT INTO items VALUES ($1, 'new')", 100); err != nil {
		t.Fatal(err)
	}
	var v int
	if err := c.QueryRow(ctx, "SELECT count(*) FROM items WHERE id >= $1", 3).Scan(&v); err != nil {
		t.Fatal(err)
	}
	if v != 2 {
		t.Fatalf("count = %d, want 2", v)
	}
	if n := tap.count("RELEASE SAVEPOINT pgtestproxy", mark); n != 1 {
		t.Errorf("%d RELEASE SAVEPOINT pgtestproxy for two prepared statements, want 1; sent: %q", n, tap.sql[mark:])
	}
	// A failure after a prepare keeps the work before it.
	if _, err := c.Exec(ctx, "INSERT INTO items VALUES ($1, 'dup')", 100); err == nil {
		t.Fatal("a duplicate key was inserted")
	}
	if err := c.QueryRow(ctx, "SELECT count(*) FROM items").Scan(&v); err != nil {
		t.Fatal(err)
	}
	if v != 4 {
		t.Errorf("count = %d after the failure, want 4", v)
	}
}

// A kept backend's next lease starts with BEGIN and SAVEPOINT alone: the end of the
// lease before (finish) turned the server's timeouts off and learned the client's own
// idle_in_transaction_session_timeout, which the next lease still honours as a plain
// server would: it reads back, autocommit statements spaced past it keep the lease,
// and a block idle past it ends the client with 25P03.
func TestTxKeptStartIsBeginAndSavepoint(t *testing.T) {
	t.Parallel()
	p := newTestProvider(t)
	tap := tapBackends(t, p)
	s := startProxy(t, Config{Provider: p, Linger: -1, Logger: nopLogger()})
	u := withIdleOption(proxyURL(s, "app", "mode=tx"))
	first := openRaw(t, u)
	pid := strings.Join(first.exchange(t, q("SELECT pg_backend_pid()")), "\n")
	first.fe.Send(&pgproto3.Terminate{})
	_ = first.fe.Flush()
	_ = first.conn.Close()
	waitFor(t, "the first lease to end", func() bool { return len(p.releases()) == 1 })

	mark := tap.len()
	r := openRaw(t, u)
	if got := strings.Join(r.exchange(t, q("SHOW idle_in_transaction_session_timeout")), "\n"); !strings.Contains(got, `DataRow "`+idleTimeout+`"`) {
		t.Fatalf("SHOW on the kept backend's lease: %s, want %s", got, idleTimeout)
	}
	tap.mu.Lock()
	sent := slices.Clone(tap.sql[mark:])
	tap.mu.Unlock()
	if len(sent) == 0 || sent[0] != "BEGIN READ WRITE;SAVEPOINT pgtestproxy" {
		t.Fatalf("the kept backend's lease began with %q, want BEGIN READ WRITE;SAVEPOINT pgtestproxy", sent)
	}
	if again := strings.Join(r.exchange(t, q("SELECT pg_backend_pid()")), "\n"); again != pid {
		t.Fatalf("the second lease ran on another backend: %s, first %s", again, pid)
	}
	for i, st := range []step{q("SELECT 1"), run1("SELECT 2")} {
		idlePause()
		if got := strings.Join(r.exchange(t, st), "\n"); strings.Contains(got, "FATAL") || !strings.Contains(got, "ReadyForQuery") {
			t.Fatalf("autocommit statement %d after a pause: %s", i, got)
		}
	}
	r.exchange(t, q("BEGIN"))
	if got := awaitFatal(t, r); !strings.Contains(got, "25P03") {
		t.Fatalf("idle block on the kept backend's lease: %s, want 25P03", got)
	}
}
