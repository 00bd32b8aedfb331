package proxy

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/pgtestproxy/pgtestproxy/internal/testpg"
	"github.com/pgtestproxy/pgtestproxy/proxy/internal/wire"
)

// The startup phase is PostgreSQL's: the same bytes sent to a plain server and to the
// proxy get the same answer, message for message (an ErrorResponse where the server
// sends one, a silent close where it logs and closes). node-postgres' connect(); end()
// sends Terminate before its startup packet and must see the connection just close.
func TestStartupPhaseAsPostgres(t *testing.T) {
	t.Parallel()
	s := startProxy(t, Config{Provider: newTestProvider(t), Logger: nopLogger()})
	plain := plainServerAddr(t)
	startup := func(version uint32, params ...string) []byte {
		body := binary.BigEndian.AppendUint32(nil, version)
		for _, p := range params {
			body = append(append(body, p...), 0)
		}
		body = append(body, 0)
		return append(binary.BigEndian.AppendUint32(nil, uint32(len(body)+4)), body...)
	}
	packet := func(code uint32, extra ...byte) []byte {
		body := append(binary.BigEndian.AppendUint32(nil, code), extra...)
		return append(binary.BigEndian.AppendUint32(nil, uint32(len(body)+4)), body...)
	}
	cat := func(parts ...[]byte) []byte {
		var b []byte
		for _, p := range parts {
			b = append(b, p...)
		}
		return b
	}
	ssl, gss := packet(sslRequestCode), packet(gssEncRequestCode)
	noUser := startup(3<<16, "database", "app")
	tests := []struct {
		name string
		send [][]byte // written one after the other, each after the answer to the one before
		want string   // what a plain server answers, when the tests' server cannot show it
	}{
		{"nothing", nil, ""},
		{"terminate", [][]byte{{'X', 0, 0, 0, 4}}, ""},
		{"one byte", [][]byte{{0}}, ""},
		{"partial length word", [][]byte{{0, 0, 0}}, ""},
		{"length 4", [][]byte{{0, 0, 0, 4}}, ""},
		{"length 7", [][]byte{{0, 0, 0, 7, 0, 3, 0}}, ""},
		{"oversized", [][]byte{binary.BigEndian.AppendUint32(nil, 1<<20)}, ""},
		{"truncated", [][]byte{{0, 0, 0, 100, 0, 3, 0, 0, 'u', 's'}}, ""},
		{"http garbage", [][]byte{[]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n")}, ""},
		{"protocol 2.0", [][]byte{startup(2<<16, "user", "u")}, ""},
		{"protocol 4.0", [][]byte{startup(4<<16, "user", "u")}, ""},
		{"unknown request code", [][]byte{packet(1234<<16 | 5689)}, ""},
		{"no user", [][]byte{noUser}, ""},
		{"empty user", [][]byte{startup(3<<16, "user", "")}, ""},
		{"unterminated parameters", [][]byte{{0, 0, 0, 12, 0, 3, 0, 0, 'u', 's', 'e', 'r'}}, ""},
		{"parameter without value", [][]byte{startup(3<<16, "user")}, ""},
		{"cancel request too short", [][]byte{packet(cancelRequestCode, 0, 0, 0, 1)}, ""},
		{"cancel request too long", [][]byte{packet(cancelRequestCode, 0, 0, 0, 1, 0, 0, 0, 2, 0)}, ""},
		{"cancel request unknown key", [][]byte{packet(cancelRequestCode, 0, 0, 0, 1, 0, 0, 0, 2)}, ""},
		{"ssl then terminate", [][]byte{ssl, {'X', 0, 0, 0, 4}}, ""},
		{"ssl then no user", [][]byte{ssl, noUser}, ""},
		{"ssl twice", [][]byte{ssl, ssl}, ""},
		{"ssl and startup in one write", [][]byte{cat(ssl, noUser)}, ""},
		// The tests' server is built with GSSAPI and offers it ('G'); the proxy has no
		// GSSAPI, so these compare with what PostgreSQL built without it answers.
		{"gss twice", [][]byte{gss, gss}, "'N'\nErrorResponse FATAL 0A000 \"unsupported frontend protocol 1234.5680: server supports 3.0 to 3.0\""},
		{"ssl then gss", [][]byte{ssl, gss, noUser}, "'N'\n'N'\nErrorResponse FATAL 28000 \"no PostgreSQL user name specified in startup packet\""},
		{"gss then ssl", [][]byte{gss, ssl, noUser}, "'N'\n'N'\nErrorResponse FATAL 28000 \"no PostgreSQL user name specified in startup packet\""},
		{"gss and startup in one write", [][]byte{cat(gss, noUser)}, "'N'\nErrorResponse FATAL 08P01 \"received unencrypted data after GSSAPI encryption request\""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			want := tc.want
			if want == "" {
				want = startupExchange(t, plain, tc.send)
			}
			got := startupExchange(t, s.Addr().String(), tc.send)
			if got != want {
				t.Fatalf("through the proxy:\n%s\nplain server:\n%s", got, want)
			}
		})
	}
}

// plainServerAddr is the address of the tests' own PostgreSQL server.
func plainServerAddr(t testing.TB) string {
	t.Helper()
	cfg, err := pgconn.ParseConfig(testpg.AdminURL(t))
	if err != nil {
		t.Fatal(err)
	}
	return net.JoinHostPort(cfg.Host, fmt.Sprint(cfg.Port))
}

// startupExchange sends each of parts to addr, reading the answer of all but the last
// (the one-byte answers to SSLRequest and GSSENCRequest), half-closes, and describes
// everything that came back up to the close.
func startupExchange(t testing.TB, addr string, parts [][]byte) string {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(20 * time.Second))
	var got []string
	for i, p := range parts {
		if _, err := c.Write(p); err != nil {
			got = append(got, "write: "+err.Error())
			break
		}
		if i < len(parts)-1 {
			var b [1]byte
			if _, err := io.ReadFull(c, b[:]); err != nil {
				got = append(got, "read: "+err.Error())
				break
			}
			got = append(got, fmt.Sprintf("%q", b[0]))
		}
	}
	wire.CloseWrite(c)
	rest, err := io.ReadAll(c)
	if err != nil && !isConnReset(err) {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			got = append(got, "no close")
		} else {
			got = append(got, "read: "+err.Error())
		}
	}
	got = append(got, describeBackend(rest)...)
	if len(got) == 0 {
		return "(closed silently)"
	}
	return strings.Join(got, "\n")
}

// describeBackend names the backend messages in b: type, and for errors severity,
// code and message (not the server's source location).
func describeBackend(b []byte) []string {
	var out []string
	for len(b) > 0 {
		n := 0
		if len(b) >= 5 {
			n = int(binary.BigEndian.Uint32(b[1:]))
		}
		if n < 4 || n+1 > len(b) {
			if b[0] == 'N' || b[0] == 'S' || b[0] == 'G' {
				out = append(out, fmt.Sprintf("%q", b[0])) // an answer to an encryption request
				b = b[1:]
				continue
			}
			return append(out, fmt.Sprintf("raw %q", b))
		}
		body := b[5 : n+1]
		switch b[0] {
		case 'E':
			var e pgproto3.ErrorResponse
			if err := e.Decode(body); err != nil {
				out = append(out, fmt.Sprintf("bad ErrorResponse %q", body))
				break
			}
			out = append(out, fmt.Sprintf("ErrorResponse %s %s %q", e.Severity, e.Code, e.Message))
		default:
			out = append(out, fmt.Sprintf("message %q %q", b[0], body))
		}
		b = b[n+1:]
	}
	return out
}
