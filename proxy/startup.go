package proxy

import (
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"

	"github.com/jackc/pgerrcode"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/pgtestproxy/pgtestproxy/internal/pgerr"
)

// Startup packet limits and request codes (PostgreSQL's pqcomm.h).
const (
	maxStartupPacket  = 10000 // MAX_STARTUP_PACKET_LENGTH, including the length word
	minStartupPacket  = 8     // length word + a version or request code
	sslRequestCode    = 80877103
	gssEncRequestCode = 80877104
	cancelRequestCode = 80877102
	protocolMajor3    = 3
)

// readStartupPacket reads one packet of the startup phase and decodes it into a
// *pgproto3.StartupMessage, *pgproto3.SSLRequest, *pgproto3.GSSEncRequest or
// *pgproto3.CancelRequest. It reads exactly the packet. A connection closed before
// its first byte returns io.EOF; anything malformed returns a *pgError.
func readStartupPacket(r io.Reader) (pgproto3.FrontendMessage, error) {
	var lenBuf [4]byte
	if _, err := io.ReadFull(r, lenBuf[:]); err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) {
			return nil, pgerr.New(pgerrcode.ProtocolViolation, "incomplete startup packet")
		}
		return nil, err
	}
	n := int64(binary.BigEndian.Uint32(lenBuf[:]))
	if n < minStartupPacket || n > maxStartupPacket {
		return nil, pgerr.New(pgerrcode.ProtocolViolation,
			fmt.Sprintf("invalid length of startup packet: %d bytes (allowed %d to %d)", n, minStartupPacket, maxStartupPacket))
	}
	body := make([]byte, n-4)
	if _, err := io.ReadFull(r, body); err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return nil, pgerr.New(pgerrcode.ProtocolViolation, "incomplete startup packet")
		}
		return nil, err
	}
	return decodeStartupPacket(body)
}

// decodeStartupPacket decodes a startup packet's body (after the length word).
func decodeStartupPacket(body []byte) (pgproto3.FrontendMessage, error) {
	code := binary.BigEndian.Uint32(body)
	var msg pgproto3.FrontendMessage
	switch {
	case code == sslRequestCode:
		msg = &pgproto3.SSLRequest{}
	case code == gssEncRequestCode:
		msg = &pgproto3.GSSEncRequest{}
	case code == cancelRequestCode:
		msg = &pgproto3.CancelRequest{}
	case code>>16 == protocolMajor3:
		return decodeStartupMessage(body)
	default:
		return nil, pgerr.New(pgerrcode.FeatureNotSupported,
			fmt.Sprintf("unsupported frontend protocol %d.%d: server supports 3.0", code>>16, code&0xffff))
	}
	if err := msg.Decode(body); err != nil {
		return nil, pgerr.New(pgerrcode.ProtocolViolation, "invalid startup packet: "+err.Error())
	}
	return msg, nil
}

// decodeStartupMessage decodes a StartupMessage of any 3.x minor version; the caller
// negotiates the minor version down to 3.0.
func decodeStartupMessage(body []byte) (*pgproto3.StartupMessage, error) {
	version := binary.BigEndian.Uint32(body)
	patched := append([]byte(nil), body...)
	binary.BigEndian.PutUint32(patched, pgproto3.ProtocolVersion30) // pgproto3 knows only 3.0 and 3.2
	msg := &pgproto3.StartupMessage{}
	if err := msg.Decode(patched); err != nil {
		return nil, pgerr.New(pgerrcode.ProtocolViolation, "invalid startup packet layout: "+err.Error())
	}
	msg.ProtocolVersion = version
	return msg, nil
}

// negotiate runs the startup phase up to a StartupMessage or CancelRequest, answering
// SSLRequest and GSSENCRequest on the way. It returns the connection to go on with:
// a TLS connection when the client negotiated one.
func (s *Server) negotiate(conn net.Conn) (net.Conn, pgproto3.FrontendMessage, error) {
	sslDone, gssDone := false, false
	for {
		msg, err := readStartupPacket(conn)
		if err != nil {
			return conn, nil, err
		}
		switch msg.(type) {
		case *pgproto3.SSLRequest:
			if sslDone {
				return conn, nil, pgerr.New(pgerrcode.ProtocolViolation, "SSLRequest after SSL negotiation")
			}
			sslDone = true
			if conn, err = s.answerSSL(conn); err != nil {
				return conn, nil, err
			}
		case *pgproto3.GSSEncRequest:
			if gssDone || sslDone {
				return conn, nil, pgerr.New(pgerrcode.ProtocolViolation, "GSSENCRequest after encryption negotiation")
			}
			gssDone = true
			if _, err := conn.Write([]byte{'N'}); err != nil {
				return conn, nil, err
			}
		default:
			return conn, msg, nil
		}
	}
}

// answerSSL answers an SSLRequest: 'N' without TLS configured, else 'S' and a TLS
// handshake (bounded by the connection's startup deadline).
func (s *Server) answerSSL(conn net.Conn) (net.Conn, error) {
	if s.cfg.TLS == nil {
		_, err := conn.Write([]byte{'N'})
		return conn, err
	}
	if _, err := conn.Write([]byte{'S'}); err != nil {
		return conn, err
	}
	tc := tls.Server(conn, s.cfg.TLS)
	if err := tc.Handshake(); err != nil {
		return conn, &quietError{fmt.Errorf("tls handshake: %w", err)}
	}
	return tc, nil
}
