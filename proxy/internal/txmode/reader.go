package txmode

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/jackc/pgerrcode"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/pgtestproxy/pgtestproxy/internal/pgerr"
)

// maxTxDecoded bounds the body of a message tx mode decodes rather than streams: a
// client's Query, Parse or FunctionCall, a server's ErrorResponse. PostgreSQL takes
// messages up to 1 GB; the proxy keeps what one session may make it hold lower.
const maxTxDecoded = 256 << 20

// txBufSize is the buffer of each direction of a tx-mode lease's backend connection:
// PostgreSQL's own send buffer is as large, so a larger one saves no read. A lease and a
// kept backend waiting in the pool hold two; at 32 KiB they were 77% of the heap of 200
// idle sessions with their own leases.
const txBufSize = 8 << 10

// txClientBufSize is the buffer of each direction of a tx-mode client connection
// (PostgreSQL's own send buffer is as large). Idle sessions are mostly these buffers:
// at 32 KiB, 500 sessions held 32 MiB of them.
const txClientBufSize = 8 << 10

// wireReader reads typed messages (a type byte, a 4-byte length, a body) from a
// buffered stream. A message's body is then read whole, skipped, or streamed on.
type wireReader struct {
	r   *bufio.Reader
	buf []byte // reused for bodies read whole
}

func newWireReader(r io.Reader) *wireReader {
	return &wireReader{r: bufio.NewReaderSize(r, txBufSize)}
}

// header reads the next message's type and body length.
func (w *wireReader) header() (typ byte, n int, err error) {
	h, err := w.r.Peek(5)
	if err != nil {
		if len(h) > 0 && errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return 0, 0, err
	}
	typ = h[0]
	l := int64(binary.BigEndian.Uint32(h[1:]))
	if l < 4 {
		return 0, 0, pgerr.New(pgerrcode.ProtocolViolation, fmt.Sprintf("invalid length %d of message type %q", l, typ))
	}
	_, _ = w.r.Discard(5)
	return typ, int(l - 4), nil
}

// body reads a body of n bytes whole. The slice is valid until the next call.
func (w *wireReader) body(typ byte, n int) ([]byte, error) {
	if n > maxTxDecoded {
		return nil, pgerr.New(pgerrcode.ProtocolViolation,
			fmt.Sprintf("message type %q of %d bytes exceeds the limit of %d bytes", typ, n, maxTxDecoded))
	}
	if cap(w.buf) < n {
		w.buf = make([]byte, n)
	}
	b := w.buf[:n]
	if _, err := io.ReadFull(w.r, b); err != nil {
		return nil, unexpectedEOF(err)
	}
	if cap(w.buf) > 1<<20 && n < 1<<20 {
		w.buf = nil // do not keep a large buffer for small messages
	}
	return b, nil
}

// skip discards a body of n bytes.
func (w *wireReader) skip(n int) error {
	_, err := w.r.Discard(n)
	return unexpectedEOF(err)
}

// buffered reports whether input is waiting in the buffer, so a writer can tell
// when to flush: before the reader would block.
func (w *wireReader) buffered() bool { return w.r.Buffered() > 0 }

func writeHeader(dst *bufio.Writer, typ byte, n int) error {
	var h [5]byte
	h[0] = typ
	binary.BigEndian.PutUint32(h[1:], uint32(n+4))
	_, err := dst.Write(h[:])
	return err
}

// writeRaw writes a message from its type and body.
func writeRaw(dst *bufio.Writer, typ byte, body []byte) error {
	if err := writeHeader(dst, typ, len(body)); err != nil {
		return err
	}
	_, err := dst.Write(body)
	return err
}

// writeMsg encodes msg into dst, using scratch to avoid an allocation.
func writeMsg(dst *bufio.Writer, scratch *[]byte, msg interface {
	Encode([]byte) ([]byte, error)
}) error {
	b, err := msg.Encode((*scratch)[:0])
	if err != nil {
		return fmt.Errorf("encode %T: %w", msg, err)
	}
	*scratch = b
	_, err = dst.Write(b)
	return err
}

func unexpectedEOF(err error) error {
	if errors.Is(err, io.EOF) {
		return io.ErrUnexpectedEOF
	}
	return err
}

// cstring splits a NUL-terminated string off the front of b.
func cstring(b []byte) (s string, rest []byte, ok bool) {
	for i, c := range b {
		if c == 0 {
			return string(b[:i]), b[i+1:], true
		}
	}
	return "", nil, false
}

// Frontend messages the proxy sends in a tx-mode session.
var syncMsg = &pgproto3.Sync{}

// copyTo streams the next n bytes to dst as they arrive, from the reader's own buffer
// (io.CopyN allocated a LimitReader and a buffer for every message it streamed).
func (w *wireReader) copyTo(dst io.Writer, n int) (int64, error) {
	var m int64
	for n > 0 {
		k := w.r.Buffered()
		if k == 0 {
			if _, err := w.r.Peek(1); err != nil {
				return m, unexpectedEOF(err)
			}
			k = w.r.Buffered()
		}
		b, _ := w.r.Peek(min(k, n))
		wrote, err := dst.Write(b)
		_, _ = w.r.Discard(wrote)
		m += int64(wrote)
		n -= wrote
		if err != nil {
			return m, err
		}
	}
	return m, nil
}
