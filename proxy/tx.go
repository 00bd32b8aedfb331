package proxy

import (
	"bufio"
	"context"
	"errors"
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
// The pumps. Each session's client pump (txclient.go) reads a message, decides,
// writes, and queues what the server will answer (txqueue.go); the backend's one
// server pump (txserver.go, on the lease's txConn) reads the replies and handles each
// by the role at the head of the queue, and gives it to the session that sent the
// message, skipping the queue to the next Sync after an extended-protocol error as the
// server does.
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
// the lease opens a fresh one.
//
// Connections sharing a session key (SPEC §6) are sessions on the lease's one backend
// and transaction (txconn.go): they take turns one unit at a time, or one client
// transaction block, which holds the backend until it ends; each session's prepared
// statements and portals get names of their own on the server (txnames.go), and
// errors name them as the client did. A session that leaves has its block rolled back
// and its statements and portals closed while the others go on. The first connection
// after all others left finds what a plain server keeps per connection reset
// (cursors, prepared statements, temporary tables, advisory locks, settings);
// connections that are open together share settings, temporary tables and advisory
// locks, as they share the backend.
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
// could be hit); a CancelRequest that reaches the proxy before it has sent the client's
// request to the backend (the request is still unread, or queued behind another
// connection's work on a shared backend) is dropped, as a late one is, so the request
// then runs to its end; a connection of a shared session key that waits, in its transaction
// block, for another connection of the same key waits forever (the block holds the
// backend); SQL-level PREPARE names are shared by those connections.

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

// txSession is one client connection on a tx-mode lease's backend (SPEC §6): its
// client pump (txclient.go) forwards and rewrites what the client sends; the
// backend's txConn forwards, swallows and re-tags what the server answers. See the
// design above.
type txSession struct {
	c      *txConn
	client net.Conn
	names  *txNames // the session's prepared statement and portal names on the server; nil: as the client's

	crd *wireReader   // the client's messages; client pump only
	cwr *bufio.Writer // to the client; under cmu
	cmu sync.Mutex
	// cmid: a message to the client is half written (shutdown must not add a FATAL).
	cmid bool
	gone bool // writing to the client failed: the client is gone, replies are dropped

	cutting atomic.Bool
	// Under c.mu: the client left; the session opened a unit and sent nothing of it
	// yet (it waits for its turn or for the units before); a CancelRequest came
	// meanwhile, for the statement it sends first.
	left, waiting, cancelFirst bool
}

func newTxSession(c *txConn, client net.Conn, names *txNames) *txSession {
	return &txSession{c: c, client: client, names: names,
		crd: newWireReader(client), cwr: bufio.NewWriterSize(client, txBufSize)}
}

// run runs the session until the client leaves or something breaks, and reports
// whether it left the backend fit for the next session.
func (s *txSession) run() (clean bool) {
	cl := newTxClient(s)
	err := cl.run()
	s.c.leaving(s)
	var own *pgError
	if errors.As(err, &own) { // the client broke the protocol
		s.toClientFatal(errorResponse("FATAL", own))
	}
	clean = s.leave(err, cl)
	if s.cutting.Load() {
		s.sayShutdown()
	}
	s.cmu.Lock()
	if !s.gone {
		_ = s.cwr.Flush()
	}
	s.cmu.Unlock()
	_ = s.client.Close()
	s.c.log.Debug("tx session ended", zap.Bool("clean", clean), zap.NamedError("client", err))
	return clean
}

// leave finishes what the client left (a COPY, a unit without its Sync, a statement
// still running, its transaction block, its prepared statements and portals) so that
// the backend can serve the lease's other sessions, and detaches the session. It
// reports whether the backend is still fit.
func (s *txSession) leave(err error, cl *txClient) bool {
	c := s.c
	defer c.detach(s)
	if errors.Is(c.failed(), errShuttingDown) {
		s.cutting.Store(true) // another session of the lease was cut first
	}
	var own *pgError
	switch {
	case s.cutting.Load():
		c.fail(errShuttingDown)
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
	if !s.drain() {
		return false
	}
	if s.names != nil { // other connections of the session key go on
		if err := cl.cleanup(); err != nil {
			_ = c.lost("clean up after a session", err)
			return false
		}
		if !s.drain() {
			return false
		}
	}
	return c.failed() == nil
}

// drain waits until the server answered everything the session sent, cancelling a
// statement still running when the client went away.
func (s *txSession) drain() bool {
	c := s.c
	c.mu.Lock()
	busy := c.owns(s) && c.failure == nil
	c.mu.Unlock()
	if busy {
		ctx, cancel := context.WithTimeout(context.Background(), cancelTimeout)
		_ = s.send(ctx)
		cancel()
	}
	timer := time.AfterFunc(txDrainTimeout, func() { c.fail(errors.New("server did not answer in time after the client left")) })
	defer timer.Stop()
	c.mu.Lock()
	defer c.mu.Unlock()
	for (c.owns(s) || c.inflight > 0) && c.failure == nil {
		c.changed.Wait()
	}
	return c.failure == nil
}

// cut ends the session from outside (shutdown); the lease's other sessions are cut too.
func (s *txSession) cut() {
	s.cutting.Store(true)
	s.c.fail(errShuttingDown)
	interrupt(s.client)
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
		s.c.srv.stats.errors.Add(1)
	}
	s.gone = true
}

// isStop reports whether err is what interrupting a read causes, or the end of input.
func isStop(err error) bool {
	return isInterrupted(err) || errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed)
}
