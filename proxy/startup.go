package proxy

import (
	"bytes"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"

	"github.com/jackc/pgerrcode"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/pgtestproxy/pgtestproxy/internal/pgerr"
	"github.com/pgtestproxy/pgtestproxy/proxy/internal/wire"
)

// Startup packet limits and request codes (PostgreSQL's pqcomm.h).
const (
	maxStartupPacket  = 10000 // MAX_STARTUP_PACKET_LENGTH, excluding the length word
	minStartupPacket  = 4     // a version or request code, excluding the length word
	cancelRequestLen  = 12    // code, process ID, secret key
	sslRequestCode    = 80877103
	gssEncRequestCode = 80877104
	cancelRequestCode = 80877102
	protocolMajor3    = 3
)

// The startup phase answers as PostgreSQL 15's ProcessStartupPacket does: what the
// server only logs (COMMERROR: a packet whose length is missing, out of range or not
// followed by that many bytes; a CancelRequest of the wrong length) ends the connection
// without a word, as a quietError; the rest is a FATAL ErrorResponse with the server's
// SQLSTATE and message.

// startupLogged is a startup failure PostgreSQL logs and answers by closing.
func startupLogged(msg string) error {
	return &quietError{pgerr.New(pgerrcode.ProtocolViolation, msg)}
}

// readStartupPacket reads one packet of the startup phase and decodes it into a
// *pgproto3.StartupMessage, *pgproto3.SSLRequest, *pgproto3.GSSEncRequest or
// *pgproto3.CancelRequest; a request code the phase no longer takes (a second
// SSLRequest, say) is decoded as the protocol version it then is, as PostgreSQL does,
// when sslDone or gssDone says so. It reads exactly the packet. A connection closed
// before its first byte returns io.EOF; anything malformed returns a quietError, a
// *pgerr.Error or an *oldProtocolError.
func readStartupPacket(r io.Reader, sslDone, gssDone bool) (pgproto3.FrontendMessage, error) {
	// The length word and the code in one read: every valid packet has both, so this
	// never reads past a packet, and an SSLRequest (which is nothing else) takes one
	// read call instead of two.
	var head [4 + minStartupPacket]byte
	got, err := io.ReadAtLeast(r, head[:], 4)
	if err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) {
			return nil, startupLogged("incomplete startup packet")
		}
		return nil, err
	}
	n := int64(binary.BigEndian.Uint32(head[:])) - 4
	if n < minStartupPacket || n > maxStartupPacket {
		return nil, startupLogged(fmt.Sprintf("invalid length of startup packet: %d bytes", n+4))
	}
	body := make([]byte, n)
	copy(body, head[4:got])
	if _, err := io.ReadFull(r, body[got-4:]); err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return nil, startupLogged("incomplete startup packet")
		}
		return nil, err
	}
	return decodeStartupPacket(body, sslDone, gssDone)
}

// decodeStartupPacket decodes a startup packet's body (after the length word).
func decodeStartupPacket(body []byte, sslDone, gssDone bool) (pgproto3.FrontendMessage, error) {
	code := binary.BigEndian.Uint32(body)
	switch {
	case code == cancelRequestCode:
		if len(body) != cancelRequestLen {
			return nil, startupLogged("invalid length of startup packet")
		}
		msg := &pgproto3.CancelRequest{}
		if err := msg.Decode(body); err != nil {
			return nil, startupLogged("invalid cancel request: " + err.Error())
		}
		return msg, nil
	case code == sslRequestCode && !sslDone:
		return &pgproto3.SSLRequest{}, nil
	case code == gssEncRequestCode && !gssDone:
		return &pgproto3.GSSEncRequest{}, nil
	case code>>16 != protocolMajor3:
		msg := fmt.Sprintf("unsupported frontend protocol %d.%d: server supports 3.0 to 3.0", code>>16, code&0xffff)
		if code>>16 < protocolMajor3 {
			return nil, &oldProtocolError{msg}
		}
		return nil, pgerr.New(pgerrcode.FeatureNotSupported, msg)
	}
	return decodeStartupMessage(body)
}

// decodeStartupMessage decodes a StartupMessage of any 3.x minor version as
// PostgreSQL does: name and value pairs up to an empty name, which must be the
// packet's last byte; a later pair overrides an earlier one. The caller negotiates the
// minor version down to 3.0.
func decodeStartupMessage(body []byte) (*pgproto3.StartupMessage, error) {
	msg := &pgproto3.StartupMessage{ProtocolVersion: binary.BigEndian.Uint32(body), Parameters: map[string]string{}}
	n := len(body)
	buf := append(body[:n:n], 0) // PostgreSQL's extra zero byte ends every string
	str := func(at int) string { return string(buf[at : at+bytes.IndexByte(buf[at:], 0)]) }
	offset := 4
	for offset < n && buf[offset] != 0 {
		name := str(offset)
		at := offset + len(name) + 1
		if at >= n {
			break // a name without a value: complained about below
		}
		value := str(at)
		msg.Parameters[name] = value
		offset = at + len(value) + 1
	}
	if offset != n-1 {
		return nil, pgerr.New(pgerrcode.ProtocolViolation, "invalid startup packet layout: expected terminator as last byte")
	}
	return msg, nil
}

// oldProtocolError is a FATAL error for a client that asked for a protocol older
// than 3.0, which PostgreSQL sends in the 2.0 format such a client reads.
type oldProtocolError struct{ msg string }

func (e *oldProtocolError) Error() string { return e.msg }

// message is the error in protocol 2.0's format.
func (e *oldProtocolError) message() []byte {
	return append([]byte("EFATAL:  "+e.msg+"\n"), 0)
}

// negotiate runs the startup phase up to a StartupMessage or CancelRequest, answering
// SSLRequest and GSSENCRequest on the way. It returns the connection to go on with:
// a TLS connection when the client negotiated one.
func (s *Server) negotiate(conn net.Conn) (net.Conn, pgproto3.FrontendMessage, error) {
	sslDone, gssDone := false, false
	for {
		msg, err := readStartupPacket(conn, sslDone, gssDone)
		if err != nil {
			return conn, nil, err
		}
		switch msg.(type) {
		case *pgproto3.SSLRequest:
			sslDone = true
			if conn, err = s.answerSSL(conn); err != nil {
				return conn, nil, err
			}
			gssDone = gssDone || isTLS(conn)
		case *pgproto3.GSSEncRequest:
			gssDone = true
			early := buffered(conn)
			if _, err := conn.Write([]byte{'N'}); err != nil {
				return conn, nil, err
			}
			if early {
				return conn, nil, unencryptedData("GSSAPI encryption request")
			}
		default:
			return conn, msg, nil
		}
	}
}

func isTLS(conn net.Conn) bool {
	_, ok := conn.(*tls.Conn)
	return ok
}

// unencryptedData is PostgreSQL's answer to bytes that came with an encryption
// request, before its answer: checked before the answer is sent, so that what a
// client sends once it has the answer never counts.
func unencryptedData(after string) error {
	return &pgerr.Error{Code: pgerrcode.ProtocolViolation, Message: "received unencrypted data after " + after,
		Detail: "This could be either a client-software bug or evidence of an attempted man-in-the-middle attack."}
}

// answerSSL answers an SSLRequest: 'N' without TLS configured, else 'S' and a TLS
// handshake (bounded by the connection's startup deadline).
func (s *Server) answerSSL(conn net.Conn) (net.Conn, error) {
	answer := byte('N')
	if s.cfg.TLS != nil {
		answer = 'S'
	}
	early := buffered(conn)
	if _, err := conn.Write([]byte{answer}); err != nil {
		return conn, err
	}
	if early {
		return conn, unencryptedData("SSL request")
	}
	if s.cfg.TLS == nil {
		return conn, nil
	}
	tc := tls.Server(conn, s.cfg.TLS)
	if err := tc.Handshake(); err != nil {
		return conn, &quietError{fmt.Errorf("tls handshake: %w", err)}
	}
	return tc, nil
}

// buffered reports whether the client has sent bytes the proxy has not read yet,
// without reading them or waiting for any.
func buffered(conn net.Conn) bool {
	data, _ := wire.Unread(conn)
	return data
}
