package txmode

import (
	"encoding/binary"
	"io"

	"github.com/jackc/pgx/v5/pgproto3"
)

// The server pump writes to the client of the session a reply is for. The methods
// take a nil session (the proxy's own messages, or a session that left) and then drop
// what they are given.

// clientSink writes to the client; once the client is gone it drops what it is given,
// so the pump can go on draining the server.
type clientSink struct{ s *Session }

func (w clientSink) Write(p []byte) (int, error) {
	if !w.s.gone {
		if _, err := w.s.cwr.Write(p); err != nil {
			w.s.gone = true
		}
	}
	return len(p), nil
}

func (s *Session) toClient(msg interface{ Encode([]byte) ([]byte, error) }) {
	if s == nil {
		return
	}
	s.cmu.Lock()
	defer s.cmu.Unlock()
	b, err := msg.Encode(nil)
	if err != nil {
		s.gone = true
		return
	}
	_, _ = clientSink{s}.Write(b)
}

// toClientFinal passes the server's FATAL error on: the session's last word.
func (s *Session) toClientFinal(e *pgproto3.ErrorResponse) {
	s.toClient(e)
	s.cmu.Lock()
	s.told = true
	s.cmu.Unlock()
}

func (s *Session) toClientRaw(typ byte, body []byte) {
	if s == nil {
		return
	}
	s.cmu.Lock()
	defer s.cmu.Unlock()
	var h [5]byte
	h[0] = typ
	putLen(h[1:], len(body)+4)
	_, _ = clientSink{s}.Write(h[:])
	_, _ = clientSink{s}.Write(body)
}

// toClientStream forwards a server message whose header was read from rd, streaming
// its body.
func (s *Session) toClientStream(rd *wireReader, typ byte, n int) error {
	s.cmu.Lock()
	defer s.cmu.Unlock()
	var h [5]byte
	h[0] = typ
	putLen(h[1:], n+4)
	_, _ = clientSink{s}.Write(h[:])
	s.cmid = true
	_, err := copyN(clientSink{s}, rd, n)
	s.cmid = err != nil
	return err
}

func (s *Session) flushClient() {
	s.cmu.Lock()
	defer s.cmu.Unlock()
	if !s.gone && s.cwr.Flush() != nil {
		s.gone = true
	}
}

func putLen(b []byte, n int) { binary.BigEndian.PutUint32(b, uint32(n)) }

// copyN copies a body of n bytes from the server to w.
func copyN(w io.Writer, r *wireReader, n int) (int64, error) {
	return r.copyTo(w, n)
}
