package txmode

import (
	"errors"
	"fmt"

	"github.com/jackc/pgerrcode"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/pgtestproxy/pgtestproxy/internal/pgerr"
	"github.com/pgtestproxy/pgtestproxy/proxy/internal/wire"
)

// txClient is the client pump of a tx-mode session: it reads the client's messages,
// forwards them to the server (rewriting transaction control) and queues what the
// server will answer. It keeps its own prediction of the txState: the state the
// server will be in when the message now read runs, assuming what was sent before
// succeeds. Where the rewrite depends on how earlier units ended, it waits for them.
type txClient struct {
	s  *Session
	cn *txConn
	st txState // predicted
	// failed says the client's block has failed; failedKnown that the pump knows it.
	failed, failedKnown bool

	inUnit    bool // a unit (messages up to Sync, Query or FunctionCall) is open; it has the backend
	skipMode  bool // the server skips this unit up to its Sync: forward it as is
	unitBlock bool // the unit began in the client's block
	unitCtl   bool // the unit holds BEGIN, COMMIT or ROLLBACK
	unitSQL   bool // a message of the unit that runs SQL was sent
	// unitRuns: a message of the unit that can change the clone or the session was
	// sent (Bind, Execute, Query, FunctionCall). A unit of Parse, Describe and Close
	// alone changes nothing a rollback would undo (prepared statements outlive one),
	// so it leaves the proxy's savepoint as clean as it found it: the next unit needs no
	// RELEASE + SAVEPOINT of its own. This is pgx's prepare, once per new statement
	// text on each connection.
	unitRuns bool
	// pathMention: a statement of the session's since its block began, or in this
	// unit, may have set search_path (ownpath.go).
	pathMention bool
	implicit    bool // the statement being planned is one of several of a query string
	stashed     bool // the transaction may hold a stash of settings set locally (locals.go)
	// runGuarded: the Query being handled runs as the idle guard left the server,
	// neither unguarded nor guarded (idle.go).
	runGuarded bool
	rw         rwState  // what ran in the proxy's savepoint since it was set (readonly.go)
	cursors    []string // cursors without HOLD declared in the client's block or query string
	msgType    byte     // the client message being handled
	temps      tempTables
	holds      []holdCursor // cursors WITH HOLD declared since the client's last commit (hold.go)
	// unnamedLive: the client may have an unnamed prepared statement of its own on
	// the server, which the proxy's statements must leave alone (send.go).
	unnamedLive bool
	// copyAt: a COPY was executed, as the copyAt-th message queued; until the client
	// ends the copy, a Sync may come while the server is in copy-in mode, which
	// ignores it (libpq sends Execute and Sync together).
	copyAt int
	// discarding: a message of the unit failed before it reached the server (a
	// deadlock): the client's messages are skipped up to its Sync.
	discarding bool

	stmts   map[string]txStmt // prepared statements that tx mode rewrites or hints
	portals map[string]txStmt // portals bound to them
	scratch []byte
}

func newTxClient(s *Session) *txClient {
	return &txClient{s: s, cn: s.c, stmts: map[string]txStmt{}, portals: map[string]txStmt{}}
}

// run pumps until the client leaves (errClientDone) or something fails.
func (c *txClient) run() error {
	for {
		if !c.s.crd.buffered() {
			if err := c.flush(); err != nil {
				return err
			}
			c.s.idle.Store(true)
			c.cn.guard.At("tx client idle")
		}
		typ, n, err := c.s.crd.header()
		if err != nil {
			return c.readFailed(err)
		}
		if typ != 'X' && c.s.idle.Load() {
			c.s.idle.Store(false)
			c.s.lease.tookInput()
		}
		c.cn.stats.BytesIn.Add(int64(n + 5))
		c.cn.guard.At("tx client pump")
		if err := c.message(typ, n); err != nil {
			return err
		}
	}
}

// readFailed says what a failed read from the client, with nothing of the message
// sent on yet, means: the client left (EOF, reset), unless the session was stopped or
// the client broke the protocol.
func (c *txClient) readFailed(err error) error {
	var own *pgerr.Error
	if c.s.idleEnded.Load() {
		return errClientDone // the proxy ended an idle block (idle.go)
	}
	if errors.As(err, &own) || wire.IsInterrupted(err) || c.cn.failed() != nil {
		return err
	}
	return errClientDone
}

// message handles one client message whose header was read.
func (c *txClient) message(typ byte, n int) error {
	c.msgType = typ
	if c.discarding {
		return c.discard(typ, n)
	}
	err := c.dispatch(typ, n)
	if e, ok := asDeadlock(err); ok {
		return c.failDeadlocked(typ, e)
	}
	return err
}

// dispatch handles one client message by its type.
func (c *txClient) dispatch(typ byte, n int) error {
	switch typ {
	case 'X': // Terminate: the backend belongs to the lease, not the connection
		return errClientDone
	case 'd', 'c', 'f', 'H': // copy data, copy done, copy fail, Flush
		return c.stream(typ, n)
	case 'B':
		return c.bind(n)
	case 'S':
		return c.sync(n)
	}
	body, err := c.s.crd.body(typ, n)
	if err != nil {
		return c.readFailed(err)
	}
	switch typ {
	case 'Q':
		return c.query(body)
	case 'P':
		return c.parse(body)
	case 'E':
		return c.execute(body)
	case 'D', 'C':
		return c.describeOrClose(typ, body)
	case 'F':
		if err := c.beginSQL(); err != nil {
			return err
		}
		c.unitRuns = true
		c.noteRan(txStmt{})
		return c.sendRaw(pending{msg: 'F'}, typ, body, true)
	}
	return pgerr.New(pgerrcode.ProtocolViolation, fmt.Sprintf("invalid frontend message type %q", typ))
}

// beginUnit opens a unit if none is open: it waits for the session's turn on the
// backend, and for the units before when its rewriting depends on how they ended.
func (c *txClient) beginUnit() error {
	if c.inUnit {
		return nil
	}
	if err := c.cn.acquire(c.s); err != nil {
		return err
	}
	c.inUnit, c.unitCtl, c.unitSQL, c.unitRuns, c.skipMode = true, false, false, false, false
	if wait, sent, st := c.cn.unitStart(); !wait {
		// The units before stream in this session's transaction block.
		c.st, c.failedKnown = st, !st.block
	} else {
		st, skip, err := c.cn.awaitUnits(c.s, sent, c.flush)
		if err != nil {
			c.inUnit = false // nothing of it was sent
			return err
		}
		if skip {
			c.skipMode = true
			return nil
		}
		c.st = st
		c.failed, c.failedKnown = st.block && st.status == 'E', true
	}
	c.unitBlock = c.st.block
	c.stashed = c.stashed && c.st.block
	return nil
}

// beginSQL prepares for a message that runs SQL: outside the client's block, a fresh
// proxy savepoint must be set first, which at the start of a unit also commits (in the
// client's view) the work of the units before. The savepoint statements go in the
// same write as the client's message, and the server answers them in the same packet.
func (c *txClient) beginSQL() error {
	if err := c.beginUnit(); err != nil {
		return err
	}
	first := !c.unitSQL
	c.unitSQL = true
	if first {
		// No stale cancel may land on this unit: PostgreSQL delivers a cancel
		// asynchronously, so one sent for a statement that has since ended (this
		// session's, or another's on a shared backend) would hit whatever runs next —
		// the savepoint statements or a statement nobody cancelled. The wait costs
		// nothing when no cancel is on its way.
		if err := c.cn.awaitCancels(c.flush); err != nil {
			return err
		}
		if !c.skipMode {
			if err := c.closeLeftover(); err != nil {
				return err
			}
		}
	}
	if c.skipMode {
		return nil
	}
	if c.st.block {
		if first && !c.failed {
			return c.unitIdle(false)
		}
		return nil
	}
	restore := ""
	if first && c.s.names != nil { // only a shared lease's sessions keep settings of their own
		restore = c.s.ownRestore(c.cn.be)
	}
	// A restore of the session's own settings (ownsettings.go) goes outside the
	// savepoint, so that no rollback of the unit's undoes it.
	set := c.st.sp != spClean || restore != ""
	if set {
		var open []planStmt
		if c.st.sp != spNone {
			open = append(open, planStmt{sql: sqlRelease, role: roleInfra})
		}
		if restore != "" {
			open = append(open, planStmt{sql: restore, role: roleInfra})
		}
		open = append(open, planStmt{sql: sqlSavepoint, role: roleInfra, ok: effSavepoint})
		c.st.sp = spClean
		if err := c.openSavepoint(open, first); err != nil {
			return err
		}
	}
	if first || set {
		return c.unitReadOnly(first)
	}
	return nil
}

// openSavepoint sends the savepoint statements that open a unit: through openUnit for
// the unit's first message, else each injected on the proxy's portal.
func (c *txClient) openSavepoint(open []planStmt, first bool) error {
	if first {
		return c.openUnit(open)
	}
	for _, ps := range open {
		if err := c.inject(ps, false); err != nil {
			return err
		}
	}
	return nil
}

// endUnit closes the unit after its Sync, Query or FunctionCall was sent, and ends the
// session's turn unless it is in a transaction block.
func (c *txClient) endUnit() {
	c.inUnit = false
	// A guarded lease's next unit in the block needs to know whether this one failed
	// (idle.go).
	c.cn.unitEnd(c.s, c.skipMode || !c.unitBlock || c.unitCtl || !c.st.block || c.cn.be.idleOwn.Load(), c.st)
}

// sync forwards a Sync, which ends the unit.
func (c *txClient) sync(n int) error {
	if err := c.s.crd.skip(n); err != nil {
		return c.readFailed(err)
	}
	if c.copyAt > 0 {
		copying, err := c.cn.awaitCopyStart(c.copyAt, c.flush)
		if err != nil {
			return err
		}
		if copying {
			// The server ignores a Sync in copy-in mode, so this one is not sent:
			// sent, it would be answered after all if the COPY failed before reading
			// it (a cancel landing while the COPY starts), and the proxy could not
			// tell how many ReadyForQuery come. The unit goes on to the Sync after
			// the client's CopyDone or CopyFail (or abandon's, after its CopyFail).
			return nil
		}
		c.copyAt = 0
	}
	if err := c.beginUnit(); err != nil {
		return err
	}
	// What the unit's implicit commit does on a plain server matters only after a
	// message that ran something (unitRuns).
	if c.unitRuns && c.checkAtEnd() {
		// The unit's implicit transaction commits at its Sync.
		if err := c.inject(checkPart(effNone), false); err != nil {
			return err
		}
		if ps, ok := c.probe(); ok {
			if err := c.inject(ps, false); err != nil {
				return err
			}
		}
	}
	if c.unitRuns && !c.skipMode && !c.st.block {
		if ps, ok := c.restoreAtEnd(); ok {
			if err := c.inject(ps, false); err != nil {
				return err
			}
		}
		if ps, ok := c.pathRead(); ok {
			if err := c.inject(ps, false); err != nil {
				return err
			}
		}
	}
	if !c.skipMode && !c.st.block {
		// The unit's implicit transaction ends its portals.
		if err := c.closePortals(true); err != nil {
			return err
		}
	}
	if c.unitRuns && c.commitsTemps() {
		if err := c.commitTemps(); err != nil {
			return err
		}
	}
	if err := c.guardIdle(); err != nil {
		return err
	}
	if err := c.send(pending{msg: 'S', work: c.unitRuns}, syncMsg); err != nil {
		return err
	}
	c.endUnit()
	return nil
}

// closePortals drops the client's unnamed portal (all its portals when all), as a
// plain server does at a simple Query (the unnamed one) and at the end of an implicit
// transaction. On a shared backend the client's portals are named ones of the
// server's, which only the proxy's Close ends: left open, they would keep the other
// sessions from dropping or altering what they read.
func (c *txClient) closePortals(all bool) error {
	if c.s.names == nil {
		return nil // the server drops the unnamed portal at a Query itself
	}
	for name := range c.portals {
		if all || name == "" {
			delete(c.portals, name)
		}
	}
	for _, server := range c.s.names.dropPortals(all) {
		if err := c.send(pending{msg: 'C', role: rolePart}, &pgproto3.Close{ObjectType: 'P', Name: server}); err != nil {
			return err
		}
	}
	return nil
}

// abandon finishes what a client that left (Terminate, EOF) started, so that the
// server gets to ReadyForQuery: a COPY FROM STDIN the server is or will be in gets a
// CopyFail (failCopy), and a unit without its Sync gets one.
func (c *txClient) abandon() error {
	if err := c.failCopy(); err != nil {
		return err
	}
	if c.inUnit {
		if err := c.guardIdle(); err != nil {
			return err
		}
		if err := c.send(pending{msg: 'S', work: c.unitSQL}, syncMsg); err != nil {
			return err
		}
		c.endUnit()
	}
	return c.flush()
}

// failCopy sends a CopyFail when the session that left still has a turn open or
// replies outstanding, as a COPY FROM STDIN of its may wait for data that will never
// come (a cancel does not end it). A server not in copy-in mode ignores a CopyFail, so
// it is sent whether or not the COPY started, and before the unit's Sync: in copy-in
// mode a Sync is ignored, so one sent before the CopyFail would be answered or not
// depending on whether the COPY had ended by itself first (a bad row, a cancel), and
// the proxy could not tell how many ReadyForQuery messages come.
func (c *txClient) failCopy() error {
	return c.locked(pending{}, func() error {
		c.cn.mu.Lock()
		mine := c.inUnit || c.cn.owns(c.s) // checked under wmu: nobody else writes meanwhile
		c.cn.mu.Unlock()
		if !mine {
			return nil
		}
		return writeMsg(c.cn.be.wr, &c.scratch, &pgproto3.CopyFail{Message: "the client went away"})
	}, false)
}

// cleanup ends what a session that left has on the backend the lease's other sessions
// go on using: its transaction block, and its prepared statements and portals.
func (c *txClient) cleanup() error {
	if err := c.beginUnit(); err != nil {
		return err
	}
	if c.st.block {
		if err := c.inject(planStmt{sql: sqlRollbackTo, role: roleInfra, ok: effEnded}, false); err != nil {
			return err
		}
		c.st.apply(effEnded)
	}
	stmts, portals := c.s.names.all()
	for kind, names := range map[byte][]string{'S': stmts, 'P': portals} {
		for _, name := range names {
			if err := c.send(pending{msg: 'C', role: roleInfra}, &pgproto3.Close{ObjectType: kind, Name: name}); err != nil {
				return err
			}
		}
	}
	if err := c.send(pending{msg: 'S'}, syncMsg); err != nil {
		return err
	}
	c.endUnit()
	return c.flush()
}
