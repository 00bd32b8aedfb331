package txmode

import (
	"errors"
	"fmt"
	"io"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
)

// The lease's start, pipelined. A kept backend's lease starts with one query string
// (BEGIN READ WRITE, SAVEPOINT pgtestproxy: the previous lease's end, finish, set the
// timeouts and learned the client's idle timeout) whose answer nothing at the lease's
// start needs: the proxy writes it into the backend's buffer
// and does not wait for it. It reaches the server with the first unit of the lease
// (or with the proxy's next own statements: a reset for the next connection, the
// lease's end), in the same write, so a lease of a kept backend starts with no round
// trip of its own, and its transaction, with now(), begins when the client's first
// message arrives. Whoever reads the backend next reads the start's answer first: the
// server pump before any reply of a unit, Backend.run before its own. A start that
// fails loses the lease (the first unit's statements then fail inside the aborted
// transaction, never outside it).
//
// The idle timeout's value (idle.go) is what the previous lease's end learned (a kept
// backend is only reused with the same startup parameters, so only a reload of the
// server's configuration in between can change it). A CancelRequest that arrives
// before the start's answer is held, as one that arrives while the proxy's savepoint
// statements run is (cancel.go), and delivered once it is in.

// sqlStartKept is the start of a kept backend's lease.
const sqlStartKept = "BEGIN READ WRITE;" + sqlSavepoint

// startAhead is the pending start: written, its answer not yet read.
type startAhead struct {
	status byte
	err    error // the first error the server reported
}

// startLater begins the lease of a kept backend whose clone was snapped: it writes
// the start's query string without sending it and sets the lease's state as start
// does. The answer is read by awaitStart.
func (b *Backend) startLater() error {
	var scratch []byte
	if err := writeMsg(b.wr, &scratch, &pgproto3.Query{String: sqlStartKept}); err != nil {
		return fmt.Errorf("begin the lease's transaction: %w", err)
	}
	b.ahead = &startAhead{}
	b.held, b.heldAt = b.wr.Buffered(), b.out.n
	b.idleOwn.Store(b.idleStart)
	b.begun()
	return nil
}

// flush sends what was written to the backend, unless that is only the lease's
// start, which waits for the first unit (the client pump flushes before it reads).
func (b *Backend) flush() error {
	if b.held > 0 && b.out.n == b.heldAt && b.wr.Buffered() == b.held {
		return nil
	}
	b.held = 0
	return b.wr.Flush()
}

// sentCounter counts the bytes written to w: whether the backend's buffer was
// flushed since the start was written.
type sentCounter struct {
	w io.Writer
	n int64
}

func (s *sentCounter) Write(p []byte) (int, error) {
	n, err := s.w.Write(p)
	s.n += int64(n)
	return n, err
}

// starting reports whether the start's answer is still to be read.
func (b *Backend) starting() bool { return b.ahead != nil }

// awaitStart reads the answer of a pending start, if any: on an error, or when the
// answer leaves no open transaction, the lease's transaction is lost (a *startError).
// A read error before a message's header is returned as it is and leaves the rest of
// the answer to the next call (the server pump stops between two messages).
func (b *Backend) awaitStart() error {
	a := b.ahead
	for a != nil && a.status == 0 {
		typ, n, err := b.rd.header()
		if err != nil {
			return err
		}
		body, err := b.rd.body(typ, n)
		if err != nil {
			b.ahead = nil // stopped inside a message: the backend is of no further use
			return &startError{fmt.Errorf("read the answer of the lease's start: %w", err)}
		}
		switch typ {
		case 'E':
			var e pgproto3.ErrorResponse
			if e.Decode(body) == nil && a.err == nil {
				a.err = &pgconn.PgError{Severity: e.Severity, Code: e.Code, Message: e.Message, Detail: e.Detail}
			}
			if e.Severity == "FATAL" || e.Severity == "PANIC" {
				b.ahead = nil
				return &startError{fmt.Errorf("begin the lease's transaction: %w", a.err)}
			}
		case 'S':
			b.noteParam(body)
		case 'Z':
			if len(body) != 1 {
				return fmt.Errorf("invalid ReadyForQuery of %d bytes", len(body))
			}
			a.status = body[0]
		}
	}
	if a == nil {
		return nil
	}
	b.ahead = nil
	if a.err == nil && a.status != 'T' {
		a.err = fmt.Errorf("status %q", a.status)
	}
	if a.err != nil {
		return &startError{fmt.Errorf("begin the lease's transaction: %w", a.err)}
	}
	return nil
}

// startError is a pending start's failure, as the server answered it.
type startError struct{ err error }

func (e *startError) Error() string { return e.err.Error() }
func (e *startError) Unwrap() error { return e.err }

// backendEnded reports whether the start failed because the backend ended (the
// server's FATAL, say while it shuts down or restarts, or the connection closed):
// that is the backend's failure, which its clients hear as 08006 (lostResponse), not
// the proxy losing track of its transaction.
func (e *startError) backendEnded() bool {
	var pe *pgconn.PgError
	if errors.As(e.err, &pe) {
		return pe.Severity == "FATAL" || pe.Severity == "PANIC"
	}
	return true
}

// pumpStart is the server pump's first step: it reads the answer of a pending start
// before any reply of a unit, then hands on a CancelRequest held for it.
func (c *txConn) pumpStart() error {
	c.mu.Lock()
	pending := c.starting
	c.mu.Unlock()
	if !pending {
		return nil
	}
	err := c.be.awaitStart()
	var failed *startError
	switch {
	case errors.As(err, &failed) && !failed.backendEnded():
		return c.lost("start the lease", failed.err)
	case err != nil:
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.starting = false
	switch p := c.q.front(); {
	case c.held == nil:
	case p == nil || p.owner != c.held:
		c.held = nil // nothing of its session's is left to cancel
	case c.q.guards == 0:
		c.held = nil
		c.deliverLater()
	default:
		c.holdLocked(c.held) // until the unit's own savepoint statements are done
	}
	return nil
}
