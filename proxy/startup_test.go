package proxy

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/pgtestproxy/pgtestproxy/internal/pgerr"
	"github.com/pgtestproxy/pgtestproxy/proxy/internal/wire"
)

func startupSeeds(f *testing.F) {
	enc := func(m pgproto3.FrontendMessage) []byte { b, _ := m.Encode(nil); return b }
	f.Add(enc(&pgproto3.StartupMessage{ProtocolVersion: pgproto3.ProtocolVersion30,
		Parameters: map[string]string{"user": "u", "database": "app", "options": "-c pgtestproxy.mode=tx"}}))
	f.Add(enc(&pgproto3.StartupMessage{ProtocolVersion: pgproto3.ProtocolVersion32,
		Parameters: map[string]string{"user": "u", "_pq_.x": "y", "mode": "bad"}}))
	f.Add(append(enc(&pgproto3.SSLRequest{}), enc(&pgproto3.StartupMessage{ProtocolVersion: pgproto3.ProtocolVersion30,
		Parameters: map[string]string{"user": "u", "database": adminDatabase}})...))
	f.Add(enc(&pgproto3.StartupMessage{ProtocolVersion: pgproto3.ProtocolVersion30,
		Parameters: map[string]string{"user": "u", "database": "app+tx+k", "mode": "db"}}))
	f.Add(enc(&pgproto3.CancelRequest{ProcessID: 1, SecretKey: []byte{1, 2, 3, 4}}))
	f.Add(enc(&pgproto3.GSSEncRequest{}))
	f.Add([]byte("GET / HTTP/1.1\r\n\r\n"))
	f.Add([]byte{0, 0, 0, 8, 0, 3, 0, 0})
}

// FuzzReadStartupPacket: decoding never panics and fails only with EOF or a *pgerr.Error.
func FuzzReadStartupPacket(f *testing.F) {
	startupSeeds(f)
	f.Fuzz(func(t *testing.T, b []byte) {
		_, err := readStartupPacket(bytes.NewReader(b), false, false)
		var pe *pgerr.Error
		var old *oldProtocolError
		if err != nil && !errors.Is(err, io.EOF) && !errors.As(err, &pe) && !errors.As(err, &old) {
			t.Fatalf("unexpected error kind %T: %v", err, err)
		}
	})
}

// FuzzStartup sends arbitrary start-up bytes to a running proxy (whose provider
// always fails, so no database is needed): the proxy never crashes, and what it
// answers is well-formed protocol.
func FuzzStartup(f *testing.F) {
	startupSeeds(f)
	s := startProxy(f, Config{Provider: &testProvider{t: f, acquireErr: &sqlStateError{"3D000", "no templates"}},
		StartupTimeout: 2 * time.Second, Logger: nopLogger()})
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := net.Dial("tcp", s.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		_, _ = c.Write(b)
		wire.CloseWrite(c)
		resp, err := io.ReadAll(c)
		if err != nil && !isConnReset(err) {
			t.Fatalf("reading the answer: %v", err)
		}
		checkFraming(t, resp)
		if n := s.stats.Panics.Load(); n > 0 {
			t.Fatalf("%d sessions panicked", n)
		}
	})
}

// checkFraming checks that resp is single-byte SSL/GSS answers followed by complete
// backend messages.
func checkFraming(t *testing.T, resp []byte) {
	t.Helper()
	for len(resp) > 0 && (resp[0] == 'N' || resp[0] == 'S') && (len(resp) < 5 || binary.BigEndian.Uint32(resp[1:]) > 1<<20) {
		resp = resp[1:]
	}
	// A client asking for protocol 2 gets the error in protocol 2's form, as from
	// PostgreSQL: 'E', the text, a NUL, and nothing after it.
	if len(resp) > 1 && resp[0] == 'E' && bytes.IndexByte(resp, 0) == len(resp)-1 &&
		bytes.HasPrefix(resp[1:], []byte("FATAL")) {
		return
	}
	for len(resp) > 0 {
		if len(resp) < 5 {
			t.Fatalf("truncated message header %q", resp)
		}
		n := int(binary.BigEndian.Uint32(resp[1:]))
		if n < 4 || len(resp) < 1+n {
			t.Fatalf("malformed message %q of length %d with %d bytes left", resp[0], n, len(resp)-1)
		}
		resp = resp[1+n:]
	}
}

func isConnReset(err error) bool {
	var ne *net.OpError
	return errors.As(err, &ne)
}
