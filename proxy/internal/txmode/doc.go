// Package txmode runs pgtestproxy's tx-mode sessions: a lease is a clone and one
// backend connection inside a transaction of the proxy's, and each client connection
// is a session on that backend whose messages are decoded and rewritten so that the
// client sees an ordinary autocommit session.
//
// # Design
//
// The server's view. A lease is a clone and one backend connection. The lease starts
// the proxy's transaction (BEGIN, with idle_in_transaction_session_timeout and, on
// PostgreSQL 17+, transaction_timeout off: the client's own idle timeout is the
// proxy's to apply, idle.go) and sets the proxy's savepoint, named
// pgtestproxy. Everything the client does runs inside that savepoint; the proxy keeps
// one level of it and no more: the server's stack is
//
//	BEGIN (the proxy's) > SAVEPOINT pgtestproxy > the client's own savepoints
//
// Each step the proxy runs for itself at the lease's start, between its connections
// and at its end (connect, begin, reset) runs within Lease.StepTimeout: past it the
// statement is cancelled, the clone is retired and the client is refused with 08006.
//
// Units. The client's requests are grouped in units: the messages up to a Sync, a
// Query, or a FunctionCall, each answered with ReadyForQuery. Outside a client block
// a unit is the client's implicit transaction. Before a unit runs SQL, the proxy
// commits, in the client's view, the work of the units before (RELEASE + SAVEPOINT,
// run through the unnamed portal, which a client cannot hold across an autocommit
// unit), in the same write as the client's messages; the server answers them in the
// same packet as the client's statement. Every statement of the proxy's is prepared,
// bound, executed and closed in one write (send.go): in the unnamed statement while
// that is not the client's (before a Query, which drops it anyway, or when the client
// prepared none since its last Query), else under the proxy's name (pgtestproxy), so
// that a client's unnamed statement survives the proxy's work as on a plain server.
// Between units nothing of the proxy's is prepared or open: pg_prepared_statements and pg_cursors show what a plain server shows, and a
// client's DEALLOCATE ALL, however it is sent, has nothing of the proxy's to remove.
// One that fails leaves its statement prepared (the server skips its Close); the next
// unit closes it before the client's first message.
// The savepoint is skipped when it is fresh (after a recovery, at lease start). If the unit fails outside a block, its ReadyForQuery
// is held, the proxy runs ROLLBACK TO SAVEPOINT pgtestproxy (recovery) and the client
// gets ReadyForQuery 'I': exactly a plain server's implicit transaction.
//
// Client transactions are the savepoint itself: BEGIN starts the client's block at the
// savepoint (which may already hold earlier statements of the same query string, as a
// plain server's implicit block does); COMMIT releases it after checking deferred
// constraints; ROLLBACK, and COMMIT of a failed block, roll back to it.
//
// READ ONLY (BEGIN, START TRANSACTION, SET TRANSACTION, also in a query string's
// implicit block) is SET LOCAL transaction_read_only in the proxy's savepoint, which is
// a subtransaction: the server refuses writes with 25006 itself, and restores the mode
// when the savepoint is released or rolled back; AND CHAIN sets it again. A session's
// default_transaction_read_only sets it at every unit's start, and READ WRITE after
// READ ONLY rolls back to the savepoint while nothing ran in it, or gets the plain
// server's error (readonly.go). The proxy's own transaction is always READ WRITE.
//
// Settings local to a transaction (SET LOCAL, set_config(…, true), SET CONSTRAINTS)
// end where the client's transaction, implicit block or autocommit statement commits:
// the values they replace are kept on the server in a placeholder setting of the
// proxy's and set back before the savepoint's release (locals.go).
//
// The client's idle_in_transaction_session_timeout (idle.go): once it may be other
// than 0, every unit begins by setting it back from a placeholder setting of the
// proxy's and ends by moving it there and setting 0, so the server never times the
// proxy's transaction out between units while the client reads its own value; the
// proxy times the client's idle block itself and ends that session with FATAL 25P03.
//
// Isolation levels: the lease's transaction is begun again at the level the lease's
// first block asks for, while it is still empty (isolation.go).
//
// Deferred constraints. The check (sqlCheckDeferred, a DO block) sets every deferrable
// constraint IMMEDIATE by name, which fires what is pending for good, and the initially
// deferred ones back to DEFERRED, which is the SET CONSTRAINTS state a new transaction
// starts with. It runs at the client's COMMIT and at the end of every autocommit unit,
// where a plain server commits the implicit transaction: appended to the client's
// query string (the CommandComplete of its last statement held until the check is
// done, since a plain server commits before it sends that one), or before the unit's
// Sync. It runs only while the lease may have deferrable constraints: learned when a
// backend first opens the clone, set by any CREATE, ALTER or DROP, and learned again
// (sqlHasDeferrable) at the end of the next autocommit unit. The server's T/E status is
// then the client's, and the server itself produces aborted-transaction errors,
// skip-to-Sync, and the outcome of the client's savepoints. Warnings and errors a plain
// server raises for misplaced transaction control (BEGIN in a block, COMMIT outside
// one, SAVEPOINT outside one, AND CHAIN outside one) and tx mode's own (PREPARE
// TRANSACTION; isolation levels and DEFERRABLE accepted with a NOTICE) are raised by the server too,
// from a DO block the proxy sends in the statement's place, so that their order and
// their skipping after an error are the server's; the proxy drops the PL/pgSQL
// context from them. Statements that cannot run in a transaction block reach the
// server, which refuses them; the proxy adds a hint to use mode=db. In a query
// string, those whose effect on a clone the proxy can give run as that (notx.go).
//
// Rewriting (rewrite.go) maps one client statement to the server statements that
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
// The pumps. Each session's client pump (client.go) reads a message, decides,
// writes, and queues what the server will answer (queue.go); the backend's one
// server pump (server.go, on the lease's txConn) reads the replies and handles each
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
// Cancel. The key the proxy issues carries the backend's real process ID, which the
// sessions on a backend share (so a client's PID is pg_backend_pid() and
// pg_terminate_backend of it ends the lease's backend), and a secret of the session's
// own: the key maps to the session, not the backend. A
// CancelRequest is forwarded while the client's work runs; while one of the proxy's
// own statements is pending it is held and forwarded once none is, and it is dropped
// when nothing runs. Held behind the savepoint statements that open a unit (whose
// replies come with the client statement's), it is delivered as soon as
// pg_stat_activity shows the backend running the client's statement (watch.go).
// The proxy waits for cancels in flight before it sends the savepoint statements of
// the next unit, and reruns its recovery if a cancel hits it. So a cancel only ever
// cancels the client's statement; it never costs the client work it was told is
// committed.
//
// Lease end. Lease.Release rolls the proxy's transaction back, restores the
// sequences to the values taken when the backend first opened the clone (one setval
// statement), runs DISCARD ALL (the three in one round trip; a provider that has
// Ending is told first, so that its next lease of the template can wait for this
// clone), and hands the backend to the provider with the clone
// (BackendKeeper) so that the next lease skips the backend's start; any failure
// retires the clone instead. A kept backend serves a later lease only for a client
// with the same startup parameters (those are the backend's reset values); otherwise
// the lease opens a fresh one.
//
// A lost lease. When the backend ends (a FATAL such as pg_terminate_backend's 57P01,
// forwarded to every session on it) or the proxy loses track of its transaction, the
// lease is lost (Lease.Lost, set before any client is told): it refuses new sessions
// (ErrLost), the router forgets it so that the session key's next connection gets a
// fresh lease, and its release retires the clone.
//
// A session leaving. A client that leaves (Terminate, EOF) has what it started finished
// (a COPY failed, a unit without Sync synced), its running statement cancelled, its
// block rolled back and its names closed, before the others go on. While its pump
// waits for the units before (the client pipelined), the session reads ahead from the
// client (watchDeparture), so a client that leaves then is seen at once rather than
// when its running statement ends. A backend whose server pump stops with replies
// still owed is not kept (they would reach its next user).
//
// Connections sharing a session key (README, "How it works") are sessions on the lease's one backend
// and transaction (conn.go): they take turns one unit at a time, or one client
// transaction block, which holds the backend until it ends; each session's prepared
// statements and portals get names of their own on the server (names.go), and
// errors name them as the client did. A session that leaves has its block rolled back
// and its statements and portals closed while the others go on. The first connection
// after all others left finds what a plain server keeps per connection reset
// (cursors, prepared statements, temporary tables, advisory locks, settings);
// connections that are open together share settings, temporary tables and advisory
// locks, as they share the backend, and its process ID.
//
// LISTEN, UNLISTEN and NOTIFY statements (notify.go) run on the server as written, which
// checks and answers them, but never delivers what its transaction, never committed,
// queued: the proxy notes each one the server completes and carries it out when the
// unit or block commits in the client's view. Each session's LISTEN channels are kept
// by the proxy (sessions of a key share the backend), and a notification goes, once
// per channel and payload in a transaction, to every session of the backend that
// listens on its channel, with the backend's PID, between two of its messages: at
// once to an idle one, after the current reply to a busy one, and to the notifying
// session itself before the ReadyForQuery of the unit. A rollback drops them, and
// ROLLBACK TO a savepoint of the client's those noted since it was set. A client
// statement that is a call of pg_notify and nothing else, with constants or parameters
// (pgnotify.go), is noted as the NOTIFY it amounts to.
//
// Connections of a session key that wait for each other (deadlock.go): when a session
// has waited for its turn for ten times the backend's deadlock_timeout while the
// holder's block is idle, the holder is ended with FATAL 40P01 (its block rolled back)
// and the waiters go on. A reconnect at once
// (depart.go) waits, for at most a second, for the sessions whose clients have sent
// input not yet read (a Terminate, say), so that it gets the per-connection reset; that
// reset sets the server's defaults for the settings of the backend's startup packet
// and then the new connection's own (startdefaults.go).
//
// Statements a plain server takes only in a transaction block (DECLARE without HOLD,
// LOCK, SET LOCAL, SET CONSTRAINTS) get its error or warning outside one, raised from
// a DO block (rewrite.go, outsideBlock). Cursors without HOLD that the client declared
// are closed (those pg_cursors still lists) before the savepoint is released at its
// COMMIT or at the end of a query string's implicit block; a rollback to the savepoint
// drops them by itself. PREPARE TRANSACTION in a block rolls the block back, then is
// refused.
//
// Temporary tables created ON COMMIT DELETE ROWS or ON COMMIT DROP (oncommit.go): the
// server keeps the action only in memory and carries it out at a commit that never
// comes, so the client pump reads it from the client's CREATE statements and, where a
// plain server commits (the client's COMMIT, the end of an autocommit unit), runs one
// DO block after the deferred check that truncates the session's DELETE ROWS tables
// and drops its DROP ones. With no such table, nothing is added.
//
// What tx mode does not do as a plain server does (documented, not hidden): SET
// LOCAL and set_config(…, true) run by a function of the template (those of functions
// created in the lease are stashed in every transaction after), through SQL-level
// EXECUTE or dynamic SQL, and set_config with an is_local that is not a literal, last
// until the lease ends; isolation levels are applied only to the lease's first block (and then to the
// rest of the lease), others get a NOTICE; READ WRITE after READ ONLY fails where only
// SET or SHOW ran before it in the block; a deferrable constraint created by DDL inside
// a function (not a top-level CREATE, ALTER or DROP) is checked only from the next
// top-level DDL on; a client's SET CONSTRAINTS ALL does not reach constraints created
// later in its transaction; deferred constraints of a FunctionCall message are checked with the
// next unit's; a WITH HOLD cursor is materialised at the client's commit (hold.go) into
// a temporary table pgtestproxy_hold_N that shows in pg_class, and its pg_cursors
// statement and RowDescription table OIDs are those of the proxy's DECLARE over it,
// while DISCARD TEMP fails with 55006 as long as one is open; one declared in a READ
// ONLY block, by a function or EXECUTE, with parameters, or over columns of the same
// name or of type record is not materialised (its query runs as it is fetched, and
// what it reads cannot be dropped, truncated or altered until CLOSE, 55006); a session's prepared statement and portal names beginning with
// pgtestproxy collide with the proxy's; on a shared session key, the client's
// statements show in pg_prepared_statements under the names the proxy gives them; locks
// (row, table, advisory transaction locks) wait for the lease's end; ON COMMIT actions
// of temporary tables are known only from top-level CREATE statements (not from ones in
// a function, EXECUTE or a rule), from the last CREATE of each name (one the server
// refused or skipped as IF NOT EXISTS counts too), and a ROLLBACK TO one of the
// client's savepoints does not undo what they recorded; a DELETE ROWS table that a
// named portal of the client's or an unmaterialised cursor WITH HOLD still reads cannot be truncated
// (55006), and one with TRUNCATE triggers fires them; in a READ ONLY block, rows are
// deleted (DELETE triggers fire) and an ON COMMIT DROP table cannot be dropped (25006);
// a client's idle_in_transaction_session_timeout reads its pg_settings source as
// session, a block failed inside a client's savepoint is also ended by the server's
// own timeout (the lease's backend), a FunctionCall's function and a query string with
// an SQL-level PREPARE or DECLARE read 0, and a value a
// template's routine sets without the client's statement naming it is not seen (idle.go);
// on a connection without a session key,
// named portals outlive the unit that made them (a shared session's portals are
// closed at the end of its autocommit unit, its unnamed one at a simple Query); now()
// is the lease's start time (on a kept backend, when its first unit arrives:
// startahead.go); pg_notify() other than as a statement of its own
// and a NOTIFY run by a function, trigger or rule are never delivered, nor are notifications from other connections to the
// clone's database; pg_listening_channels() is empty; a query string
// that goes on after a COMMIT inside it cannot be cancelled (its savepoint statement
// could be hit); a CancelRequest that reaches the proxy before it has sent the client's
// request to the backend (the request is still unread, or queued behind another
// connection's work on a shared backend) is dropped, as a late one is, so the request
// then runs to its end; a transaction block idle for ten deadlock_timeouts while another
// connection of its key waits for its turn is taken for a deadlock, and its connection
// ended (deadlock.go); a
// client's own RESET ALL on a later connection of a session key returns to the first
// connection's startup settings; SQL-level PREPARE names are shared by those connections;
// a Sync sent while the server is in COPY FROM STDIN is not passed on (the server
// ignores it there), so where the COPY fails before reading it (a cancel landing while
// the COPY starts) the client gets one ReadyForQuery, at its next Sync, where a plain
// server answers both.
package txmode
