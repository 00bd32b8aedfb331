package txmode

import (
	"io"

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
	_, err := io.CopyN(c.cn.be.wr, c.s.crd.r, int64(n))
	return unexpectedEOF(err)
}

// inject sends a server statement of the proxy's, prepared once per backend: through
// the unnamed portal at the start of a unit (the client can have no portal of its own
// then), else through the proxy's portal.
func (c *txClient) inject(ps planStmt, unnamed bool) error {
	// Each message of the statement gets the statement's role and effects; only the
	// Execute completes it, re-tagged if it is the carrier.
	p := pending{role: ps.role, fail: ps.fail, prefix: unnamed && ps.role == roleInfra}
	if p.role == roleCarrier {
		p.role = rolePart
	}
	name, err := c.prepared(ps.sql, p)
	if err != nil {
		return err
	}
	portal := ""
	if !unnamed {
		portal = spName
		p.msg = 'C'
		if err := c.send(p, &pgproto3.Close{ObjectType: 'P', Name: portal}); err != nil {
			return err
		}
	}
	p.msg = 'B'
	if err := c.send(p, &pgproto3.Bind{DestinationPortal: portal, PreparedStatement: name}); err != nil {
		return err
	}
	p.msg, p.role, p.tag, p.ok, p.raise, p.check, p.probe = 'E', ps.role, ps.tag, ps.ok, ps.raise, ps.check, ps.probe
	return c.send(p, &pgproto3.Execute{Portal: portal})
}

// prepared returns the name of the proxy's prepared statement for sql on the backend.
// Unless the server confirmed it is prepared, it is (re)prepared first, with p's role:
// a Parse the server skipped after an error, or a DEALLOCATE, leaves it unprepared.
func (c *txClient) prepared(sql string, p pending) (string, error) {
	ps := c.cn.be.prepStmt(sql)
	if ps.isReady() {
		return ps.name, nil
	}
	p.msg = 'C'
	if err := c.send(p, &pgproto3.Close{ObjectType: 'S', Name: ps.name}); err != nil {
		return "", err
	}
	p.msg, p.prep, p.prepGen = 'P', ps, c.cn.be.gen.Load()
	return ps.name, c.send(p, &pgproto3.Parse{Name: ps.name, Query: ps.sql})
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
	return c.cn.be.wr.Flush()
}
