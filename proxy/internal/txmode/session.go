package txmode

import (
	"bufio"
	"context"
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgerrcode"
	"github.com/jackc/pgx/v5/pgproto3"
	"go.uber.org/zap"

	"github.com/pgtestproxy/pgtestproxy/internal/pgerr"
	"github.com/pgtestproxy/pgtestproxy/proxy/internal/wire"
)

// txDrainTimeout bounds how long a tx-mode session whose client went away waits for
// the server to answer what the client sent (after cancelling it), so that the
// backend can serve the next session.
const txDrainTimeout = 10 * time.Second

var (
	// errClientDone ends the client direction of a session normally (Terminate, EOF).
	errClientDone = errors.New("client ended the session")
	// errStopped ends the server pump when the lease stops it at a message boundary.
	errStopped = errors.New("server direction stopped")
)

// Session is one client connection on a tx-mode lease's backend: its client pump
// (client.go) forwards and rewrites what the client sends; the backend's txConn
// forwards, swallows and re-tags what the server answers. See the package doc.
type Session struct {
	lease  *Lease
	c      *txConn
	client net.Conn
	names  *txNames // the session's prepared statement and portal names on the server; nil: as the client's

	crd *wireReader   // the client's messages; client pump only
	cwr *bufio.Writer // to the client; under cmu
	cmu sync.Mutex
	// cmid: a message to the client is half written (shutdown must not add a FATAL).
	cmid bool
	gone bool // writing to the client failed: the client is gone, replies are dropped
	// told: the client was given its session's final error (the server's FATAL or the
	// proxy's); under cmu.
	told bool

	cutting atomic.Bool
	// idle: the client pump waits for the client's next message with nothing of it
	// read, or read a Terminate or the stream's end (until left is set): Attach.
	idle atomic.Bool
	// Under c.mu: the client left; the session opened a unit and sent nothing of it
	// yet (it waits for its turn or for the units before); a CancelRequest came
	// meanwhile, for the statement it sends first.
	left, waiting, cancelFirst bool
	// departed: under c.mu, the client's stream ended while its pump waited for the
	// server (watchDeparture).
	departed bool
	// channels: under c.mu, the channels the client listens on (notify.go).
	channels map[string]struct{}
	// The client's idle_in_transaction_session_timeout (idle.go): idleEnded, the proxy
	// ended the session for it; the rest under c.mu.
	idleEnded atomic.Bool
	idleW     idleWatch
	// deadlockEnded: under c.mu, the session's idle block was found to deadlock the
	// key's backend and the session is being ended for it (deadlock.go).
	deadlockEnded bool
	// own: the settings kept per connection of a shared lease (ownsettings.go).
	own ownSettings
}

func newTxSession(l *Lease, c *txConn, client net.Conn, names *txNames) *Session {
	return &Session{lease: l, c: c, client: client, names: names,
		crd: &wireReader{r: bufio.NewReaderSize(client, txClientBufSize)}, cwr: bufio.NewWriterSize(client, txClientBufSize)}
}

// run runs the session until the client leaves or something breaks, and reports
// whether it left the backend fit for the next session.
func (s *Session) run() (clean bool) {
	cl := newTxClient(s)
	err := cl.run()
	s.c.leaving(s)
	s.c.idleStop(s)
	var own *pgerr.Error
	if errors.As(err, &own) { // the client broke the protocol
		s.toClientFatal(wire.ErrorResponse("FATAL", own))
	}
	clean = s.leave(err, cl)
	if s.cutting.Load() {
		s.sayShutdown()
	} else if failure := s.c.failed(); failure != nil {
		// The lease's backend failed under the session: its client hears why, as
		// PostgreSQL's would (never a socket closed without a word).
		s.toClientFatal(lostResponse(failure))
	}
	s.cmu.Lock()
	if !s.gone {
		_ = s.cwr.Flush()
	}
	s.cmu.Unlock()
	_ = s.client.Close()
	s.c.log.Debug("tx session ended", zap.Bool("clean", clean), zap.NamedError("cause", err))
	return clean
}

// leave finishes what the client left (a COPY, a unit without its Sync, a statement
// still running, its transaction block, its prepared statements and portals) so that
// the backend can serve the lease's other sessions, and detaches the session. It
// reports whether the backend is still fit.
func (s *Session) leave(err error, cl *txClient) bool {
	c := s.c
	defer c.detach(s)
	if errors.Is(c.failed(), wire.ErrShuttingDown) {
		s.cutting.Store(true) // another session of the lease was cut first
	}
	var own *pgerr.Error
	switch {
	case s.cutting.Load():
		c.fail(wire.ErrShuttingDown)
		return false
	case !errors.Is(err, errClientDone) && !errors.As(err, &own):
		if c.failed() == nil {
			_ = c.lost("a session broke off", err)
		}
		return false
	}
	if err := cl.abandon(); err != nil {
		_ = c.lost("finish what a session left", err)
		return false
	}
	if !s.drain(true) {
		return false
	}
	if s.names != nil { // other connections of the session key go on
		if err := cl.cleanup(); err != nil {
			_ = c.lost("clean up after a session", err)
			return false
		}
		if !s.drain(false) {
			return false
		}
	}
	return c.failed() == nil
}

// drain waits until the server answered everything the session sent, cancelling a
// statement still running when the client went away. left says that what is
// drained is what it left (not the proxy's own clean-up): its statement is then
// cancelled again while it runs (a COPY it left got its CopyFail from abandon).
func (s *Session) drain(left bool) bool {
	c := s.c
	c.mu.Lock()
	busy := c.owns(s) && c.failure == nil
	c.mu.Unlock()
	if busy {
		s.cancelOnce()
	}
	timer := time.AfterFunc(txDrainTimeout, func() { c.fail(errors.New("server did not answer in time after the client left")) })
	defer timer.Stop()
	if busy && left {
		done := make(chan struct{})
		defer close(done)
		c.cancels.Add(1)
		go s.cancelAgain(done)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for (c.owns(s) || c.inflight > 0 || c.recovering) && c.failure == nil {
		c.changed.Wait()
	}
	return c.failure == nil
}

// drainCancelEvery is how often drain cancels again the statement of a client that
// left: a CancelRequest the server takes before the statement starts (while it reads
// the pipeline the statement is in) cancels nothing, and the statement would then keep
// the lease's other connections waiting until the drain gives up on the backend.
const drainCancelEvery = 500 * time.Millisecond

func (s *Session) cancelOnce() {
	ctx, cancel := context.WithTimeout(context.Background(), wire.CancelTimeout)
	_ = s.Send(ctx)
	cancel()
}

// cancelAgain cancels s's statement every drainCancelEvery while s still owns a
// reply, until done is closed. It is one of c.cancels, which stop waits for.
func (s *Session) cancelAgain(done <-chan struct{}) {
	c := s.c
	defer c.cancels.Done()
	defer c.contain("tx drain canceller")
	t := time.NewTicker(drainCancelEvery)
	defer t.Stop()
	for {
		select {
		case <-done:
			return
		case <-t.C:
		}
		c.mu.Lock()
		busy := c.owns(s) && c.failure == nil
		c.mu.Unlock()
		if !busy {
			return
		}
		s.cancelOnce()
	}
}

// lostResponse is the proxy's FATAL error to a client whose session ended because the
// lease's backend failed (cause) without a FATAL error of the server's or the proxy's
// own having told it.
func lostResponse(cause error) *pgproto3.ErrorResponse {
	return &pgproto3.ErrorResponse{Severity: "FATAL", SeverityUnlocalized: "FATAL", Code: pgerrcode.ConnectionFailure,
		Message: "the tx-mode session's transaction was lost: " + cause.Error(),
		Hint:    "The lease ends when its connections close; the next lease gets a fresh clone."}
}

// cut ends the session from outside (shutdown); the lease's other sessions are cut too.
func (s *Session) cut() {
	s.cutting.Store(true)
	s.c.fail(wire.ErrShuttingDown)
	wire.Interrupt(s.client)
}

// sayShutdown tells the client, between two messages, that the proxy ends its session.
func (s *Session) sayShutdown() {
	s.toClientFatal(wire.ShutdownResponse())
}

// toClientFatal writes a final error to the client, if its stream is between messages.
func (s *Session) toClientFatal(e *pgproto3.ErrorResponse) {
	s.cmu.Lock()
	defer s.cmu.Unlock()
	if s.cmid || s.gone || s.told {
		return
	}
	s.told = true
	_ = s.client.SetWriteDeadline(time.Now().Add(wire.GoodbyeWriteTimeout))
	var b []byte
	if err := writeMsg(s.cwr, &b, e); err == nil && s.cwr.Flush() == nil {
		s.c.stats.Error(e.Code)
	}
	s.gone = true
}
