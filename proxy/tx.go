package proxy

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"
	"go.uber.org/zap"
)

// tx mode: design
//
// The server's view. A lease is a clone and one backend connection. The lease starts
// the proxy's transaction (BEGIN, with idle_in_transaction_session_timeout and, on
// PostgreSQL 17+, transaction_timeout off) and sets the proxy's savepoint, named
// pgtestproxy. Everything the client does runs inside that savepoint; the proxy keeps
// one level of it and no more: the server's stack is
//
//	BEGIN (the proxy's) > SAVEPOINT pgtestproxy > the client's own savepoints
//
// Units. The client's requests are grouped in units: the messages up to a Sync, a
// Query, or a FunctionCall, each answered with ReadyForQuery. Outside a client block
// a unit is the client's implicit transaction. Before a unit runs SQL, the proxy
// commits, in the client's view, the work of the units before (RELEASE + SAVEPOINT,
// prepared once per backend and run through Bind/Execute on the unnamed portal, which
// a client cannot hold across an autocommit unit), in the same write as the client's
// messages; the server answers them in the same packet as the client's statement.
// The savepoint is skipped when it is fresh (after a recovery, at lease start). If the unit fails outside a block, its ReadyForQuery
// is held, the proxy runs ROLLBACK TO SAVEPOINT pgtestproxy (recovery) and the client
// gets ReadyForQuery 'I': exactly a plain server's implicit transaction.
//
// Client transactions are the savepoint itself: BEGIN starts the client's block at the
// savepoint (which may already hold earlier statements of the same query string, as a
// plain server's implicit block does); COMMIT releases it after checking deferred
// constraints (SAVEPOINT pgtestproxy_check; SET CONSTRAINTS ALL IMMEDIATE; ROLLBACK TO
// pgtestproxy_check; RELEASE …: the rollback restores the SET CONSTRAINTS state);
// ROLLBACK, and COMMIT of a failed block, roll back to it. The server's T/E status is
// then the client's, and the server itself produces aborted-transaction errors,
// skip-to-Sync, and the outcome of the client's savepoints. Warnings and errors a plain
// server raises for misplaced transaction control (BEGIN in a block, COMMIT outside
// one, SAVEPOINT outside one, AND CHAIN outside one) and tx mode's own (PREPARE
// TRANSACTION; transaction modes accepted with a NOTICE) are raised by the server too,
// from a DO block the proxy sends in the statement's place, so that their order and
// their skipping after an error are the server's; the proxy drops the PL/pgSQL
// context from them. Statements that cannot run in a transaction block reach the
// server, which refuses them; the proxy adds a hint to use mode=db.
//
// Rewriting (txrewrite.go) maps one client statement to the server statements that
// stand for it in the current state, each with a role: the client's own (replies
// forwarded), a part (replies swallowed, errors and notices forwarded), the carrier
// (its CommandComplete forwarded with the client statement's tag: BEGIN, START
// TRANSACTION, COMMIT, ROLLBACK, SET), or the proxy's infrastructure (replies
// swallowed; an error ends the session, because the proxy no longer knows where its
// transaction stands). A query string is split with internal/sqllex and only its
// transaction control is replaced, in place, so that the server still parses the
// whole string first; error positions are mapped back to the client's string. In the
// extended protocol, a statement that must never run as written (COMMIT, ROLLBACK,
// PREPARE TRANSACTION) is prepared as a stand-in that describes and binds like it
// (ROLLBACK TO SAVEPOINT pgtestproxy); the proxy tracks which statement and portal
// names hold transaction control and runs the rewrite when the portal is executed.
//
// The pumps. The client pump (txclient.go) reads a message, decides, writes, and
// queues what the server will answer (txqueue.go); the server pump (txserver.go)
// reads the replies and handles each by the role at the head of the queue, skipping
// the queue to the next Sync after an extended-protocol error as the server does.
// Bodies the proxy does not rewrite are streamed, never buffered whole; nothing waits
// for a Sync. The client pump predicts the state each message will run in; it waits
// for the server only when a rewrite depends on how earlier units ended: before a unit
// that follows one outside a client block (it may need recovery), and at a COMMIT in a
// block whose outcome is not known yet. Units inside a client block stream. When the
// server skips after an error up to a Sync not yet sent, waiting is pointless and the
// messages are forwarded as they are (the server skips them too).
//
// Cancel. The key the proxy issues maps to the session, not the backend. A
// CancelRequest is forwarded while the client's work runs; while one of the proxy's
// own statements is pending it is held and forwarded once none is, and it is dropped
// when nothing runs. Held behind the savepoint statements that open a unit (whose
// replies come with the client statement's), it is delivered as soon as
// pg_stat_activity shows the backend running the client's statement (txwatch.go).
// The proxy waits for cancels in flight before it sends the savepoint statements of
// the next unit, and reruns its recovery if a cancel hits it. So a cancel only ever
// cancels the client's statement; it never costs the client work it was told is
// committed.
//
// Lease end. txLease.Release rolls the proxy's transaction back, restores the
// sequences to the values taken when the backend first opened the clone (one setval
// statement), runs DISCARD ALL, and hands the backend to the provider with the clone
// (BackendKeeper) so that the next lease skips the backend's start; any failure
// retires the clone instead. A kept backend serves a later lease only for a client
// with the same startup parameters (those are the backend's reset values); otherwise
// the lease opens a fresh one. Connections sharing a session key take turns: the next
// one waits up to txTurnWait for the one before to end, then is refused; what a
// connection left open (a block, cursors, prepared statements, temporary tables,
// advisory locks, settings) is reset before the next one runs.
//
// What tx mode does not do as a plain server does (documented, not hidden): SET
// LOCAL and set_config(…, true) in a client transaction last until the lease ends;
// statements a plain server allows only in a transaction block (DECLARE without HOLD,
// LOCK, SET LOCAL) are accepted outside one; deferred constraints of statements
// outside a client transaction are checked at the next client COMMIT, and deferred
// triggers a COMMIT checked fire again at later COMMITs; SET CONSTRAINTS in a client
// transaction lasts until the lease ends; locks (row, table, advisory transaction
// locks) and ON COMMIT actions of temporary tables wait for the lease's end; a client
// that sets idle_in_transaction_session_timeout itself (or RESET ALL with a server
// default) turns the proxy's protection off; portals outlive the unit that made
// them; now() is the lease's start time; NOTIFY is never delivered; a query string
// that goes on after a COMMIT inside it cannot be cancelled (its savepoint statement
// could be hit).

// txDrainTimeout bounds how long a tx-mode session whose client went away waits for
// the server to answer what the client sent (after cancelling it), so that the
// backend can serve the next session.
const txDrainTimeout = 10 * time.Second

var (
	// errClientDone ends the client direction of a session normally (Terminate, EOF).
	errClientDone = errors.New("client ended the session")
	// errStopped ends the server direction when the session stops it at a message
	// boundary.
	errStopped = errors.New("server direction stopped")
)

// txSession is one client connection on a tx-mode lease's backend (SPEC §6): the
// client pump (txclient.go) forwards and rewrites what the client sends, the server
// pump (txserver.go) forwards, swallows and re-tags what the server answers, and the
// reply queue between them says which is which. See doc.go for the design.
type txSession struct {
	srv    *Server
	log    *zap.Logger
	be     *txBackend
	client net.Conn

	crd *wireReader   // the client's messages; client pump only
	cwr *bufio.Writer // to the client; under cmu
	cmu sync.Mutex
	// cmid: a message to the client is half written (shutdown must not add a FATAL).
	cmid bool
	gone bool // writing to the client failed: the client is gone, replies are dropped

	wmu sync.Mutex // the backend's writer (be.wr)

	mu        sync.Mutex
	changed   *sync.Cond // a unit completed, skipping started, a cancel ended, or the session failed
	q         replyQueue
	st        txState // where the server's transaction stands, as replies show it
	unitsDone int     // units (up to Sync, Query, FunctionCall) answered with ReadyForQuery
	skipping  bool    // an extended-protocol error: the server skips to the next Sync
	retry     bool    // a cancel hit the recovery: run it again
	failure   error   // the session failed; both pumps stop
	stopping  bool    // the session stops the server pump
	finished  bool    // the session no longer touches the backend
	copyIn    bool    // the server is in COPY FROM STDIN for the client
	cancelled bool    // a CancelRequest is held until a client statement runs
	watching  bool    // a watch of the backend runs for the held request (txwatch.go)
	inflight  int     // CancelRequests being delivered
	cancels   sync.WaitGroup

	cutting atomic.Bool
	scratch []byte // encoding buffer of the server pump
}

func newTxSession(srv *Server, client net.Conn, be *txBackend) *txSession {
	s := &txSession{srv: srv, log: srv.log, be: be, client: client,
		crd: newWireReader(client), cwr: bufio.NewWriterSize(client, txBufSize), st: be.st}
	s.changed = sync.NewCond(&s.mu)
	return s
}

// run runs the session until the client leaves or something breaks, and reports
// whether the backend is idle and fit for the next session.
func (s *txSession) run() (clean bool) {
	served := make(chan error, 1)
	go func() {
		err := s.serverPump()
		if !errors.Is(err, errStopped) {
			s.fail(err) // the client direction cannot go on without the server
		}
		served <- err
	}()
	cl := newTxClient(s)
	err := cl.run()
	var own *pgError
	if errors.As(err, &own) { // the client broke the protocol
		s.toClientFatal(errorResponse("FATAL", own))
	}
	drained := s.drain(err, cl)
	s.mu.Lock()
	s.stopping = true
	s.mu.Unlock()
	interrupt(s.be.conn)
	serr := <-served
	s.finish()
	if s.cutting.Load() {
		s.sayShutdown()
	}
	s.cmu.Lock()
	_ = s.cwr.Flush()
	s.cmu.Unlock()
	_ = s.client.Close()
	s.be.st = s.st
	clean = drained && errors.Is(serr, errStopped) && s.failure == nil && !s.cutting.Load()
	s.log.Debug("tx session ended", zap.Bool("clean", clean), zap.NamedError("client", err), zap.NamedError("server", serr))
	return clean
}

// finish waits until no CancelRequest of the session is on its way to the backend and
// marks the session finished: from then on nothing of it touches the backend, which
// may serve the next session.
func (s *txSession) finish() {
	s.cancels.Wait()
	s.mu.Lock()
	for s.inflight > 0 {
		s.changed.Wait()
	}
	s.finished = true
	s.mu.Unlock()
	_ = s.be.conn.SetReadDeadline(time.Time{})
}

// drain waits, after the client direction ended with err, until the server answered
// everything sent to it, cancelling a statement still running when the client went
// away. It reports whether the backend got there.
func (s *txSession) drain(err error, cl *txClient) bool {
	if !errors.Is(err, errClientDone) || s.cutting.Load() {
		return false
	}
	if err := cl.abandon(); err != nil {
		return false
	}
	s.mu.Lock()
	busy := s.q.len() > 0 && s.failure == nil
	s.mu.Unlock()
	if busy {
		ctx, cancel := context.WithTimeout(context.Background(), cancelTimeout)
		_ = s.send(ctx)
		cancel()
	}
	timer := time.AfterFunc(txDrainTimeout, func() { s.fail(errors.New("server did not answer in time after the client left")) })
	defer timer.Stop()
	s.mu.Lock()
	defer s.mu.Unlock()
	for (s.q.len() > 0 || s.inflight > 0) && s.failure == nil {
		s.changed.Wait()
	}
	return s.failure == nil
}

// fail ends the session because of err: both pumps stop. The first failure counts.
func (s *txSession) fail(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.failure != nil || s.finished {
		return
	}
	s.failure = err
	s.changed.Broadcast()
	interrupt(s.client)
	interrupt(s.be.conn)
}

// failed returns the session's failure, if any.
func (s *txSession) failed() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.failure
}

// lost ends the session because the proxy no longer knows where its transaction
// stands; the client is told so with a FATAL error instead of being served wrongly.
func (s *txSession) lost(what string, cause error) error {
	err := fmt.Errorf("%s: %w", what, cause)
	s.log.Warn("tx session lost its transaction", zap.Error(err))
	s.toClientFatal(&pgproto3.ErrorResponse{Severity: "FATAL", SeverityUnlocalized: "FATAL", Code: codeInternal,
		Message: "pgtestproxy lost track of the session's transaction: " + err.Error(),
		Hint:    "The lease's database is retired; reconnect to get a fresh one."})
	s.fail(err)
	return err
}

// cut ends the session from outside (shutdown).
func (s *txSession) cut() {
	s.cutting.Store(true)
	s.fail(errShuttingDown)
}

// sayShutdown tells the client, between two messages, that the proxy ends its session.
func (s *txSession) sayShutdown() {
	s.toClientFatal(&pgproto3.ErrorResponse{Severity: "FATAL", SeverityUnlocalized: "FATAL",
		Code: codeAdminShutdown, Message: "terminating connection because pgtestproxy is shutting down"})
}

// toClientFatal writes a final error to the client, if its stream is between messages.
func (s *txSession) toClientFatal(e *pgproto3.ErrorResponse) {
	s.cmu.Lock()
	defer s.cmu.Unlock()
	if s.cmid || s.gone {
		return
	}
	_ = s.client.SetWriteDeadline(time.Now().Add(goodbyeWriteTimeout))
	var b []byte
	if err := writeMsg(s.cwr, &b, e); err == nil && s.cwr.Flush() == nil {
		s.srv.stats.errors.Add(1)
	}
	s.gone = true
}

// isStop reports whether err is what interrupting a read causes, or the end of input.
func isStop(err error) bool {
	return isInterrupted(err) || errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed)
}
