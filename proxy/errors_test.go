package proxy

import (
	"encoding/binary"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgerrcode"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/pgtestproxy/pgtestproxy/internal/leasemode"
	"github.com/pgtestproxy/pgtestproxy/proxy/internal/wire"
)

// Every error of the README's "Errors" the proxy owns reaches a real client as a FATAL ErrorResponse
// with its SQLSTATE and a message naming the object.
func TestStartupErrors(t *testing.T) {
	t.Parallel()
	p := newTestProvider(t)
	s := startProxy(t, Config{Provider: p})
	tests := []struct {
		name     string
		db       string
		query    []string
		code     string
		contains []string
	}{
		{"unknown template", "nosuch", nil, "3D000", []string{`"nosuch"`, "app"}},
		{"bad mode parameter", "app", []string{"mode=fast"}, "22023", []string{"mode", "db", "tx", "fast"}},
		{"bad mode option", "app", []string{"options=-c%20pgtestproxy.mode%3Dfast"}, "22023",
			[]string{"pgtestproxy.mode", "db", "tx"}},
		{"unknown proxy option", "app", []string{"options=-c%20pgtestproxy.colour%3Dred"}, "22023",
			[]string{"pgtestproxy.colour"}},
		{"upstream rejects a runtime parameter", "app", []string{"TimeZone=Nowhere/Bogus"}, "22023",
			[]string{"TimeZone"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := pgx.Connect(testContext(t), proxyURL(s, tc.db, tc.query...))
			pgErr := wantSQLState(t, err, tc.code)
			if pgErr.Severity != "FATAL" {
				t.Errorf("severity %s, want FATAL", pgErr.Severity)
			}
			for _, want := range tc.contains {
				if !strings.Contains(pgErr.Message+pgErr.Hint, want) {
					t.Errorf("message %q (hint %q) does not name %q", pgErr.Message, pgErr.Hint, want)
				}
			}
		})
	}
	if n := p.liveCount(); n != 0 {
		t.Fatalf("%d leases still held after refused connections", n)
	}
}

// Provider errors keep their SQLSTATE; others become XX000.
func TestProviderErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		err  error
		code string
	}{
		{"no clone in time", &sqlStateError{"53300", `no clone of template "app" within 30s`}, "53300"},
		{"upstream unreachable", &sqlStateError{"08006", "upstream 127.0.0.1:1 unreachable"}, "08006"},
		{"plain error", errors.New("catalog exploded"), "XX000"},
		{"wrapped network error", &net.OpError{Op: "dial", Net: "tcp", Err: errors.New("refused")}, "XX000"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			p := &testProvider{t: t, acquireErr: tc.err}
			s := startProxy(t, Config{Provider: p})
			_, err := pgx.Connect(testContext(t), proxyURL(s, "app"))
			pgErr := wantSQLState(t, err, tc.code)
			if pgErr.Message != tc.err.Error() {
				t.Errorf("message %q, want the provider's %q", pgErr.Message, tc.err.Error())
			}
		})
	}
}

// An upstream that cannot be reached is 08006 naming its address, never its password,
// and the lease is released as unclean.
func TestUpstreamUnreachable(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().(*net.TCPAddr)
	_ = ln.Close() // nothing listens there now
	p := newTestProvider(t)
	p.connConfig = func(db string) *pgconn.Config {
		cfg, _ := pgconn.ParseConfig("postgres://proxyuser:sekrit-pw@127.0.0.1/" + db + "?sslmode=disable&connect_timeout=5")
		cfg.Port = uint16(addr.Port)
		return cfg
	}
	s := startProxy(t, Config{Provider: p})
	_, err = pgx.Connect(testContext(t), proxyURL(s, "app"))
	pgErr := wantSQLState(t, err, "08006")
	if !strings.Contains(pgErr.Message, addr.String()) || strings.Contains(pgErr.Message, "sekrit") {
		t.Fatalf("message %q should name %s and not the password", pgErr.Message, addr)
	}
	waitFor(t, "lease released", func() bool { return len(p.releases()) == 1 })
	if p.releases()[0].clean {
		t.Error("lease of an unreachable upstream released as clean")
	}
}

// The session cap refuses one session too many with 53300, and admits again once a
// session ended.
func TestSessionCap(t *testing.T) {
	t.Parallel()
	p := newTestProvider(t)
	s := startProxy(t, Config{Provider: p, MaxSessions: 1})
	ctx := testContext(t)
	first := connect(t, proxyURL(s, "app"))
	_, err := pgx.Connect(ctx, proxyURL(s, "app"))
	wantSQLState(t, err, "53300")
	_ = first.Close(ctx)
	waitFor(t, "session slot free", func() bool { return s.Stats().SessionsActive == 0 })
	connect(t, proxyURL(s, "app"))
}

// TestSessionCapCountsClients: a session holds its slot under MaxSessions while its
// client is connected, not while the proxy ends its lease after the client left: a
// client that closes a connection and opens the next at the cap is admitted. Before,
// the slot was held until the lease had ended, and under load churning clients got
// 53300 at a cap of their own number plus 16 (11,626 refusals in TestStressLoad's
// 500-session run).
func TestSessionCapCountsClients(t *testing.T) {
	t.Parallel()
	for _, mode := range []leasemode.Mode{leasemode.DB, leasemode.Tx} {
		t.Run(string(mode), func(t *testing.T) {
			t.Parallel()
			p := newTestProvider(t)
			gate := make(chan struct{})
			p.releaseGate = gate
			s := startProxy(t, Config{Provider: p, MaxSessions: 1, Linger: -1})
			ctx := testContext(t)
			url := modeURL(s, mode, "app")
			first := connect(t, url)
			_ = first.Close(ctx)
			waitFor(t, "the first lease's end to start", func() bool { return p.releasing.Load() == 1 })
			second, err := pgx.Connect(ctx, url)
			close(gate)
			if err != nil {
				t.Fatalf("a connection after the only other one closed, its lease still ending: %v", err)
			}
			_ = second.Close(ctx)
		})
	}
}

// Malformed startup traffic is answered with a FATAL error (or nothing, for a client
// that sent nothing) and never disturbs a session running beside it.
func TestBadStartupPackets(t *testing.T) {
	t.Parallel()
	p := newTestProvider(t)
	s := startProxy(t, Config{Provider: p})
	ctx := testContext(t)
	bystander := connect(t, proxyURL(s, "app"))
	if _, err := bystander.Exec(ctx, "BEGIN; INSERT INTO items VALUES (7, 'seven')"); err != nil {
		t.Fatal(err)
	}
	startup := func(version uint32, params ...string) []byte {
		body := binary.BigEndian.AppendUint32(nil, version)
		for _, p := range params {
			body = append(append(body, p...), 0)
		}
		body = append(body, 0)
		return append(binary.BigEndian.AppendUint32(nil, uint32(len(body)+4)), body...)
	}
	tests := []struct {
		name string
		send []byte
		code string
	}{
		{"http garbage", []byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"), ""},
		{"truncated", []byte{0, 0, 0, 100, 0, 3, 0, 0, 'u', 's'}, ""},
		{"oversized", binary.BigEndian.AppendUint32(nil, 1<<20), ""},
		{"too short", []byte{0, 0, 0, 4}, ""},
		{"unterminated parameters", []byte{0, 0, 0, 12, 0, 3, 0, 0, 'u', 's', 'e', 'r'}, "08P01"},
		{"unknown request code", []byte{0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x99}, "0A000"},
		{"no user", startup(3<<16, "database", "app"), "28000"},
		{"ssl request twice", append(encode(t, &pgproto3.SSLRequest{}), encode(t, &pgproto3.SSLRequest{})...), "08P01"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := rawConn(t, s)
			if _, err := c.Write(tc.send); err != nil {
				t.Fatal(err)
			}
			wire.CloseWrite(c)
			if tc.name == "ssl request twice" {
				var b [1]byte
				if _, err := c.Read(b[:]); err != nil || b[0] != 'N' {
					t.Fatalf("SSLRequest answered %q, %v", b[0], err)
				}
			}
			if tc.code == "" {
				readSilentClose(t, c)
				return
			}
			if e := readFatal(t, c); e.Code != tc.code || e.Severity != "FATAL" {
				t.Fatalf("got %s %s: %s, want FATAL %s", e.Severity, e.Code, e.Message, tc.code)
			}
		})
	}
	t.Run("silent client", func(t *testing.T) {
		c := rawConn(t, s)
		wire.CloseWrite(c)
		readSilentClose(t, c)
	})
	var n int
	if err := bystander.QueryRow(ctx, "SELECT count(*) FROM items").Scan(&n); err != nil || n != 4 {
		t.Fatalf("bystander session disturbed: %d rows, %v", n, err)
	}
}

// A startup asking for protocol 3.2 (or 3.x) with _pq_ options is answered with
// NegotiateProtocolVersion for 3.0 naming the options, then the session works;
// SSLRequest and GSSENCRequest are answered 'N' first.
func TestProtocolNegotiation(t *testing.T) {
	t.Parallel()
	p := newTestProvider(t)
	s := startProxy(t, Config{Provider: p})
	for _, minor := range []uint32{2, 7} {
		c := rawConn(t, s)
		for _, req := range []pgproto3.FrontendMessage{&pgproto3.GSSEncRequest{}, &pgproto3.SSLRequest{}} {
			if _, err := c.Write(encode(t, req)); err != nil {
				t.Fatal(err)
			}
			var b [1]byte
			if _, err := c.Read(b[:]); err != nil || b[0] != 'N' {
				t.Fatalf("%T answered %q, %v", req, b[0], err)
			}
		}
		msg := &pgproto3.StartupMessage{ProtocolVersion: 3<<16 | 2,
			Parameters: map[string]string{"user": "u", "database": "app", "_pq_.compression": "on"}}
		b := encode(t, msg)
		binary.BigEndian.PutUint32(b[4:], 3<<16|minor)
		if _, err := c.Write(b); err != nil {
			t.Fatal(err)
		}
		fe := pgproto3.NewFrontend(c, c)
		first, err := fe.Receive()
		if err != nil {
			t.Fatal(err)
		}
		npv, ok := first.(*pgproto3.NegotiateProtocolVersion)
		if !ok || npv.NewestMinorProtocol != 0 || len(npv.UnrecognizedOptions) != 1 || npv.UnrecognizedOptions[0] != "_pq_.compression" {
			t.Fatalf("3.%d: first message %#v, want NegotiateProtocolVersion(0, [_pq_.compression])", minor, first)
		}
		readUntilReady(t, fe)
		fe.Send(&pgproto3.Query{String: "SELECT 1"})
		if err := fe.Flush(); err != nil {
			t.Fatal(err)
		}
		readUntilReady(t, fe)
	}
}

// readUntilReady reads backend messages up to ReadyForQuery, failing on an error.
func readUntilReady(t testing.TB, fe *pgproto3.Frontend) {
	t.Helper()
	for {
		msg, err := fe.Receive()
		if err != nil {
			t.Fatal(err)
		}
		switch m := msg.(type) {
		case *pgproto3.ErrorResponse:
			t.Fatalf("error %s: %s", m.Code, m.Message)
		case *pgproto3.ReadyForQuery:
			return
		}
	}
}

// A message beyond the limit on the admin console is a protocol violation.
func TestOversizedAdminMessage(t *testing.T) {
	t.Parallel()
	s := startProxy(t, Config{Provider: &testProvider{t: t}})
	c := rawConn(t, s)
	if _, err := c.Write(encode(t, &pgproto3.StartupMessage{ProtocolVersion: pgproto3.ProtocolVersion30,
		Parameters: map[string]string{"user": "u", "database": adminDatabase}})); err != nil {
		t.Fatal(err)
	}
	readUntilReady(t, pgproto3.NewFrontend(c, c))
	hdr := append([]byte{'Q'}, binary.BigEndian.AppendUint32(nil, wire.MaxFrontendMessage+100)...)
	if _, err := c.Write(hdr); err != nil {
		t.Fatal(err)
	}
	if e := readFatal(t, c); e.Code != "08P01" {
		t.Fatalf("got %s: %s", e.Code, e.Message)
	}
}

// A client that does not finish start-up within StartupTimeout is cut off without a
// word, as PostgreSQL does at authentication_timeout.
func TestStartupTimeout(t *testing.T) {
	t.Parallel()
	s := startProxy(t, Config{Provider: &testProvider{t: t}, StartupTimeout: 200 * time.Millisecond})
	for name, send := range map[string][]byte{"nothing": nil, "half a packet": {0, 0, 0, 40, 0, 3}} {
		t.Run(name, func(t *testing.T) {
			c := rawConn(t, s)
			if _, err := c.Write(send); err != nil {
				t.Fatal(err)
			}
			readSilentClose(t, c)
		})
	}
}

// readSilentClose reads up to the close of c and fails if anything came.
func readSilentClose(t testing.TB, c net.Conn) {
	t.Helper()
	b, err := io.ReadAll(c)
	if len(b) > 0 || (err != nil && !isConnReset(err)) {
		t.Fatalf("want a silent close, got %q, %v", b, err)
	}
}

// TestAdminConsoleOutsideSessionCap: with every client session taken, the admin console
// still connects (TestStressLoad's SHOW POOLS got 53300 at 500 sessions), and it has a
// bound of its own.
func TestAdminConsoleOutsideSessionCap(t *testing.T) {
	t.Parallel()
	s := startProxy(t, Config{Provider: newTestProvider(t), MaxSessions: 1})
	ctx := testContext(t)
	client := connect(t, proxyURL(s, "app"))
	defer client.Close(ctx)
	if c, err := pgx.Connect(ctx, proxyURL(s, "app")); err == nil {
		_ = c.Close(ctx)
		t.Fatal("a second client past MaxSessions 1 was admitted")
	}
	var admins []*pgx.Conn
	defer func() {
		for _, c := range admins {
			_ = c.Close(ctx)
		}
	}()
	for i := range maxAdminSessions {
		c, err := pgx.Connect(ctx, proxyURL(s, adminDatabase, "default_query_exec_mode=simple_protocol"))
		if err != nil {
			t.Fatalf("admin console session %d with the client sessions full: %v", i+1, err)
		}
		admins = append(admins, c)
	}
	_, err := pgx.Connect(ctx, proxyURL(s, adminDatabase))
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != pgerrcode.TooManyConnections || !strings.Contains(pgErr.Detail, "admin console") {
		t.Fatalf("admin console session past its bound: err = %v, want 53300 naming the console", err)
	}
}
