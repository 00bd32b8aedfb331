package txmode

import (
	"github.com/jackc/pgx/v5/pgproto3"
)

// stream forwards a message that needs no reply of its own (copy data, Flush).
func (c *txClient) stream(typ byte, n int) error {
	if typ == 'c' || typ == 'f' { // CopyDone, CopyFail
		c.copyAt = 0
	}
	c.cn.wmu.Lock()
	defer c.cn.wmu.Unlock()
	if err := writeHeader(c.cn.be.wr, typ, n); err != nil {
		return err
	}
	return c.copyBody(n)
}

func (c *txClient) copyBody(n int) error {
	_, err := c.s.crd.copyTo(c.cn.be.wr, n)
	return err
}

// inject sends a server statement of the proxy's: through the unnamed portal at the
// start of a unit (the client can have no portal of its own then), else through the
// proxy's portal. The statement is prepared under the proxy's name (never the unnamed
// statement, which is the client's) and closed again, portal and statement, in the
// same write, so that between units nothing of the proxy's is left for the client to
// see in pg_prepared_statements or pg_cursors, or to DEALLOCATE.
func (c *txClient) inject(ps planStmt, unnamed bool) error {
	// Each message of the statement gets the statement's role and effects; only the
	// Execute completes it, re-tagged if it is the carrier.
	p := pending{role: ps.role, fail: ps.fail, prefix: unnamed && ps.role == roleInfra}
	if p.role == roleCarrier {
		p.role = rolePart
	}
	portal := ""
	if !unnamed {
		portal = spName
	}
	if c.cn.be.leftover.Load() && !unnamed {
		if err := c.closeProxy(p, portal); err != nil {
			return err
		}
	}
	if ps.role != roleInfra {
		// An error of the statement's makes the server skip its Close up to the Sync;
		// the next unit closes it (beginSQL). An error of the proxy's ends the lease.
		c.cn.be.leftover.Store(true)
	}
	p.msg = 'P'
	if err := c.send(p, &pgproto3.Parse{Name: spName, Query: ps.sql}); err != nil {
		return err
	}
	p.msg = 'B'
	if err := c.send(p, &pgproto3.Bind{DestinationPortal: portal, PreparedStatement: spName}); err != nil {
		return err
	}
	e := p
	e.msg, e.role, e.tag, e.ok, e.raise, e.check, e.probe = 'E', ps.role, ps.tag, ps.ok, ps.raise, ps.check, ps.probe
	e.quiet, e.idle, e.path = ps.quiet, ps.idle, ps.path
	if err := c.send(e, &pgproto3.Execute{Portal: portal}); err != nil {
		return err
	}
	return c.closeProxy(p, portal)
}

// closeProxy closes the proxy's portal and statement. The unnamed portal is the
// proxy's only at the start of a unit outside a block, where a plain server's client
// has no portal left. A Close of what does not exist is no error.
func (c *txClient) closeProxy(p pending, portal string) error {
	p.msg = 'C'
	if err := c.send(p, &pgproto3.Close{ObjectType: 'P', Name: portal}); err != nil {
		return err
	}
	return c.send(p, &pgproto3.Close{ObjectType: 'S', Name: spName})
}

// closeLeftover closes, at the start of a unit, what a statement of the proxy's that
// failed in an earlier unit left prepared (its Close was skipped with the rest of its
// unit), before the client's first message can see it.
func (c *txClient) closeLeftover() error {
	if !c.cn.be.leftover.Load() {
		return nil
	}
	if err := c.closeProxy(pending{role: rolePart}, spName); err != nil {
		return err
	}
	c.cn.be.leftover.Store(false)
	return nil
}

// send queues p and writes msg to the server.
func (c *txClient) send(p pending, msg interface{ Encode([]byte) ([]byte, error) }) error {
	return c.locked(p, func() error { return writeMsg(c.cn.be.wr, &c.scratch, msg) }, true)
}

// sendRaw queues p and forwards the client's message as read; unit says it ends the
// unit.
func (c *txClient) sendRaw(p pending, typ byte, body []byte, unit bool) error {
	if err := c.locked(p, func() error { return writeRaw(c.cn.be.wr, typ, body) }, true); err != nil {
		return err
	}
	if unit {
		c.endUnit()
	}
	return nil
}

// locked queues p (unless queue is false: a message without replies) and runs write
// under the backend's write lock, so that the queue holds the messages in the order
// they reach the server.
func (c *txClient) locked(p pending, write func() error, queue bool) error {
	c.cn.wmu.Lock()
	defer c.cn.wmu.Unlock()
	c.cn.mu.Lock()
	err := c.cn.failure
	if err == nil && queue {
		p.owner = c.s
		c.cn.q.push(p)
		c.s.waiting = false
		if c.s.cancelFirst {
			c.s.cancelFirst = false
			c.cn.holdLocked(c.s)
		}
	}
	c.cn.mu.Unlock()
	if err != nil {
		return err
	}
	return write()
}

func (c *txClient) flush() error {
	c.cn.wmu.Lock()
	defer c.cn.wmu.Unlock()
	return c.cn.be.flush()
}

// openUnit sends the savepoint statements that open a unit, through the unnamed
// portal. While the server's unnamed statement is not the client's (the unit begins
// with a Query, which drops it anyway; the session's names are its own; or the client
// has prepared none since its last Query), they use it too, which costs no Close
// before a Query (it replaces the unnamed statement and portal) and one pair of Closes
// otherwise; else each is prepared under the proxy's name (inject).
func (c *txClient) openUnit(stmts []planStmt) error {
	if c.unnamedLive && c.s.names == nil && c.msgType != 'Q' {
		for _, ps := range stmts {
			if err := c.inject(ps, true); err != nil {
				return err
			}
		}
		return nil
	}
	for _, ps := range stmts {
		p := pending{msg: 'P', role: roleInfra, prefix: true}
		parse, err := (&pgproto3.Parse{Query: ps.sql}).Encode(c.scratch[:0])
		if err != nil {
			return err
		}
		c.scratch = parse
		if err := c.sendEncoded(p, parse); err != nil {
			return err
		}
		p.msg = 'B'
		if err := c.sendEncoded(p, unnamedMsgs.bind); err != nil {
			return err
		}
		p.msg, p.ok = 'E', ps.ok
		if err := c.sendEncoded(p, unnamedMsgs.execute); err != nil {
			return err
		}
	}
	if c.msgType == 'Q' {
		return nil
	}
	p := pending{msg: 'C', role: roleInfra, prefix: true}
	if err := c.sendEncoded(p, unnamedMsgs.closePortal); err != nil {
		return err
	}
	return c.sendEncoded(p, unnamedMsgs.closeStmt)
}

// unnamedMsgs are the messages openUnit sends that are always the same, encoded once.
var unnamedMsgs = struct{ bind, execute, closePortal, closeStmt []byte }{
	bind:        mustEncode(&pgproto3.Bind{}),
	execute:     mustEncode(&pgproto3.Execute{}),
	closePortal: mustEncode(&pgproto3.Close{ObjectType: 'P'}),
	closeStmt:   mustEncode(&pgproto3.Close{ObjectType: 'S'}),
}

func mustEncode(msg interface{ Encode([]byte) ([]byte, error) }) []byte {
	b, err := msg.Encode(nil)
	if err != nil {
		panic(err)
	}
	return b
}

// sendEncoded queues p and writes msg, a message already encoded: the messages of
// every unit are encoded without an allocation each (send's interface argument
// escapes).
func (c *txClient) sendEncoded(p pending, msg []byte) error {
	return c.locked(p, func() error {
		_, err := c.cn.be.wr.Write(msg)
		return err
	}, true)
}
