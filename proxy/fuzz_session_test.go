package proxy

import (
	"bytes"
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/pgtestproxy/pgtestproxy/internal/leasemode"
	"github.com/pgtestproxy/pgtestproxy/internal/pgerr"
	"github.com/pgtestproxy/pgtestproxy/proxy/internal/wire"
)

// FuzzSCRAM runs the server side of SCRAM-SHA-256 on arbitrary client messages: it
// never panics, fails only with a *pgerr.Error or the end of the input, and never
// authenticates (a client without the password cannot make a valid proof for the
// server's fresh nonce).
func FuzzSCRAM(f *testing.F) {
	f.Add("SCRAM-SHA-256", []byte("n,,n=,r=rOprNGfwEbeRWgbNEkqO"), []byte("c=biws,r=rOprNGfwEbeRWgbNEkqO,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="))
	f.Add("SCRAM-SHA-256", []byte("y,,n=u,r=abc"), []byte("c=eSws,r=abc,p=AAAA"))
	f.Add("SCRAM-SHA-256", []byte("p=tls-server-end-point,,n=,r=x"), []byte(""))
	f.Add("SCRAM-SHA-256-PLUS", []byte("n,,n=,r=x"), []byte("c=biws"))
	f.Add("SCRAM-SHA-256", []byte("n,a=admin,n=user,r=\x00\xff"), []byte("c=biws,r=\x00,p==="))
	a, err := newAuthenticator("secret")
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, mech string, first, final []byte) {
		var in []byte
		in, _ = (&pgproto3.SASLInitialResponse{AuthMechanism: mech, Data: first}).Encode(in)
		in, _ = (&pgproto3.SASLResponse{Data: final}).Encode(in)
		rw := struct {
			io.Reader
			io.Writer
		}{bytes.NewReader(in), io.Discard}
		err := a.authenticate(rw, "u", &wire.MsgBuffer{})
		var pe *pgerr.Error
		switch {
		case err == nil:
			t.Fatal("a fuzzed SCRAM exchange authenticated")
		case !errors.As(err, &pe) && !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF):
			t.Fatalf("unexpected error kind %T: %v", err, err)
		}
	})
}

// FuzzAdminConsole sends arbitrary bytes to the admin console after a start-up: the
// proxy never crashes and answers well-formed protocol.
func FuzzAdminConsole(f *testing.F) {
	for _, m := range [][]pgproto3.FrontendMessage{
		{&pgproto3.Query{String: "SHOW STATS"}, &pgproto3.Query{String: "show help;"}},
		{&pgproto3.Query{String: "SHOW LEASES"}, &pgproto3.Terminate{}},
		{&pgproto3.Parse{Query: "SHOW STATS"}, &pgproto3.Bind{}, &pgproto3.Execute{}, &pgproto3.Sync{}},
		{&pgproto3.Query{String: "SELECT 1; SHOW VERSION"}, &pgproto3.CopyData{Data: []byte("x")}},
		{&pgproto3.Query{String: ""}, &pgproto3.Flush{}, &pgproto3.Sync{}},
	} {
		f.Add(encodeAll(m...))
	}
	f.Add([]byte("Q\x00\x00\x00\x04"))
	f.Add([]byte("Q\xff\xff\xff\xffSHOW"))
	s := startProxy(f, Config{Provider: &testProvider{t: f, acquireErr: &sqlStateError{"3D000", "no templates"}},
		Logger: nopLogger()})
	f.Fuzz(func(t *testing.T, b []byte) {
		fuzzSession(t, s, adminDatabase, "", b)
	})
}

// FuzzTxSession sends arbitrary bytes to a tx-mode session on a real clone after its
// start-up, where the tx-mode decoder and rewriter read them: the proxy never crashes,
// answers well-formed protocol, and every lease ends (the provider checks at cleanup).
func FuzzTxSession(f *testing.F) {
	for _, m := range [][]pgproto3.FrontendMessage{
		{&pgproto3.Query{String: "BEGIN; INSERT INTO items VALUES (9, 'x'); COMMIT"}},
		{&pgproto3.Query{String: "SAVEPOINT a; ROLLBACK TO a; SELECT 1/0"}, &pgproto3.Query{String: "SELECT 1"}},
		{&pgproto3.Parse{Name: "s", Query: "SELECT $1::int"}, &pgproto3.Bind{PreparedStatement: "s",
			Parameters: [][]byte{[]byte("1")}}, &pgproto3.Describe{ObjectType: 'P'}, &pgproto3.Execute{}, &pgproto3.Sync{}},
		{&pgproto3.Query{String: "COPY items FROM STDIN"}, &pgproto3.CopyData{Data: []byte("7\tseven\n")}, &pgproto3.CopyDone{}},
		{&pgproto3.Query{String: "COPY items FROM STDIN"}, &pgproto3.CopyFail{Message: "no"}},
		{&pgproto3.Parse{Query: "BEGIN"}, &pgproto3.Bind{}, &pgproto3.Execute{}, &pgproto3.Close{ObjectType: 'S'}, &pgproto3.Sync{}},
		{&pgproto3.FunctionCall{Function: 1}, &pgproto3.Sync{}},
		{&pgproto3.Query{String: "DISCARD ALL; RESET ALL; SET search_path = x"}, &pgproto3.Terminate{}},
	} {
		f.Add(encodeAll(m...))
	}
	f.Add([]byte("P\x00\x00\x00\x05\x00"))
	f.Add([]byte("B\x00\x00\x00\x0c\x00\x00\x00\x01\x00\x05\x00\x00"))
	p := newTestProvider(f)
	s := startProxy(f, Config{Provider: p, Logger: nopLogger()})
	f.Fuzz(func(t *testing.T, b []byte) {
		fuzzSession(t, s, "app", leasemode.Tx, b)
	})
}

// fuzzSession starts a session on db through s, sends b, half-closes and reads all
// the proxy answers.
func fuzzSession(t *testing.T, s *Server, db string, mode leasemode.Mode, b []byte) {
	c, err := net.Dial("tcp", s.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(20 * time.Second))
	params := map[string]string{"user": "fuzz", "database": db}
	if mode != "" {
		params["mode"] = string(mode)
	}
	start := encodeAll(&pgproto3.StartupMessage{ProtocolVersion: pgproto3.ProtocolVersion30, Parameters: params})
	if _, err := c.Write(append(start, b...)); err != nil && !isConnReset(err) {
		t.Fatal(err)
	}
	wire.CloseWrite(c)
	resp, err := io.ReadAll(c)
	if err != nil && !isConnReset(err) {
		t.Fatalf("reading the answer: %v", err)
	}
	checkFraming(t, resp)
	if n := s.stats.Panics.Load(); n > 0 {
		t.Fatalf("%d sessions panicked", n)
	}
}

// encodeAll encodes frontend messages back to back.
func encodeAll(msgs ...pgproto3.FrontendMessage) []byte {
	var b []byte
	for _, m := range msgs {
		var err error
		if b, err = m.Encode(b); err != nil {
			panic(err)
		}
	}
	return b
}
