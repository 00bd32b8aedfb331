package wire

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/jackc/pgerrcode"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/pgtestproxy/pgtestproxy/internal/pgerr"
)

// MaxFrontendMessage bounds the body of a message the proxy decodes itself (auth,
// admin console). The relay does not decode and leaves the bound to the upstream.
const MaxFrontendMessage = 1 << 20

// ReadMessage reads one typed message (type byte, length, body) from r. It reads
// exactly the message and nothing after it, so the connection can be handed to the
// relay afterwards without losing buffered bytes.
func ReadMessage(r io.Reader, maxBody int) (typ byte, body []byte, err error) {
	var hdr [5]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return 0, nil, err
	}
	n := int64(binary.BigEndian.Uint32(hdr[1:])) - 4
	switch {
	case n < 0:
		return 0, nil, pgerr.New(pgerrcode.ProtocolViolation,
			fmt.Sprintf("invalid length %d of message type %q", n+4, hdr[0]))
	case n > int64(maxBody):
		return 0, nil, pgerr.New(pgerrcode.ProtocolViolation,
			fmt.Sprintf("message type %q of %d bytes exceeds the limit of %d bytes", hdr[0], n, maxBody))
	}
	body = make([]byte, n)
	if _, err := io.ReadFull(r, body); err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return 0, nil, err
	}
	return hdr[0], body, nil
}

// MsgBuffer collects backend messages so that a reply goes out in one write.
type MsgBuffer struct {
	buf []byte
	err error
}

func (b *MsgBuffer) Add(msg pgproto3.BackendMessage) {
	if b.err != nil {
		return
	}
	b.buf, b.err = msg.Encode(b.buf)
}

// Flush writes what was collected to w and empties the buffer.
func (b *MsgBuffer) Flush(w io.Writer) error {
	if b.err != nil {
		return fmt.Errorf("encode message: %w", b.err)
	}
	_, err := w.Write(b.buf)
	b.buf = b.buf[:0]
	return err
}
