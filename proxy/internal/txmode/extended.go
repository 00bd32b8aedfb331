package txmode

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/jackc/pgerrcode"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/pgtestproxy/pgtestproxy/internal/pgerr"
	"github.com/pgtestproxy/pgtestproxy/internal/sqllex"
)

// The extended protocol: the client pump keeps, per prepared statement and portal
// name, what tx mode must know of the statement, so that it can rewrite transaction
// control when a portal is executed, whatever was prepared and bound before.

// parse forwards a Parse, with a stand-in for a statement that must not run as written.
func (c *txClient) parse(body []byte) error {
	name, rest, ok1 := cstring(body)
	sql, params, ok2 := cstring(rest)
	if !ok1 || !ok2 {
		return pgerr.New(pgerrcode.ProtocolViolation, "invalid Parse message")
	}
	if err := c.beginSQL(); err != nil {
		return err
	}
	c.unnamedLive = c.unnamedLive || name == "" && c.s.names == nil
	st := sqllex.Classify(sql)
	t := newTxStmt(&st)
	c.noteIdle(t)
	c.notePath(t)
	if t.control() || t.noTx() || t.copy || t.ddl || t.ch != nil || t.notifyAt != nil || t.local.any() || t.path || t.hold != nil {
		c.stmts[name] = t
	} else {
		delete(c.stmts, name)
	}
	query := sql
	if stand := standIn(t); stand != "" {
		query = stand
	} else if server, ok := c.deallocServer(t.dealloc); ok {
		query = "DEALLOCATE " + pgx.Identifier{server}.Sanitize()
	}
	if query == sql && c.s.names == nil {
		return c.sendRaw(pending{msg: 'P'}, 'P', body, false)
	}
	server, err := c.define('S', name)
	if err != nil {
		return err
	}
	msg := &pgproto3.Parse{Name: server, Query: query}
	if len(params) >= 2 {
		n := int(binary.BigEndian.Uint16(params))
		for i := 0; i < n && len(params) >= 2+4*(i+1); i++ {
			msg.ParameterOIDs = append(msg.ParameterOIDs, binary.BigEndian.Uint32(params[2+4*i:]))
		}
	}
	return c.send(pending{msg: 'P'}, msg)
}

// define returns the server's name for a statement or portal the client creates,
// closing the session's unnamed one first when the client replaces it.
func (c *txClient) define(kind byte, name string) (string, error) {
	if c.s.names == nil {
		return name, nil
	}
	server, closeFirst := c.s.names.define(kind, name)
	if closeFirst {
		err := c.send(pending{msg: 'C', role: rolePart}, &pgproto3.Close{ObjectType: kind, Name: server})
		return server, err
	}
	return server, nil
}

// use returns the server's name for a statement or portal the client refers to.
func (c *txClient) use(kind byte, name string) string {
	if c.s.names == nil {
		return name
	}
	return c.s.names.use(kind, name)
}

// standIn returns what the server prepares in place of a client's statement that
// must never run as written (it would end the proxy's transaction), or "" when the
// statement is prepared as written. The stand-in describes as the statement does (no
// columns) and, like it, can be prepared and bound in a failed transaction; the proxy
// runs its rewrite when the client executes it.
func standIn(t txStmt) string {
	switch t.kind {
	case sqllex.Commit, sqllex.Rollback, sqllex.PrepareTransaction:
		return sqlRollbackTo
	}
	return ""
}

// bind forwards a Bind without reading its parameters into memory: only the portal
// and statement names are decoded.
func (c *txClient) bind(n int) error {
	portalName, err := c.bindName()
	if err != nil {
		return err
	}
	stmtName, err := c.bindName()
	if err != nil {
		return err
	}
	rest := n - len(portalName) - len(stmtName) - 2
	if rest < 0 {
		return pgerr.New(pgerrcode.ProtocolViolation, "invalid Bind message")
	}
	if err := c.beginSQL(); err != nil {
		if _, ok := asDeadlock(err); ok { // the Bind is not sent: skip its parameters
			if serr := c.s.crd.skip(rest); serr != nil {
				return c.readFailed(serr)
			}
		}
		return err
	}
	c.unitRuns = true // binding may evaluate a domain's CHECK, which may call anything
	var params []byte // read whole: a pg_notify call's arguments
	if t, ok := c.stmts[stmtName]; ok {
		if t.notifyAt != nil {
			if params, err = c.s.crd.body('B', rest); err != nil {
				return c.readFailed(err)
			}
			t.ch = bindNotify(t.notifyAt, params)
		}
		c.notePath(t) // each execution may set it
		c.portals[portalName] = t
	} else {
		delete(c.portals, portalName)
	}
	c.noteBound(stmtName)
	portal, err := c.define('P', portalName)
	if err != nil {
		return err
	}
	stmt := c.use('S', stmtName)
	return c.locked(pending{msg: 'B'}, func() error {
		if err := writeHeader(c.cn.be.wr, 'B', rest+len(portal)+len(stmt)+2); err != nil {
			return err
		}
		_, _ = c.cn.be.wr.WriteString(portal)
		_ = c.cn.be.wr.WriteByte(0)
		_, _ = c.cn.be.wr.WriteString(stmt)
		_ = c.cn.be.wr.WriteByte(0)
		if params != nil {
			_, err := c.cn.be.wr.Write(params)
			return err
		}
		return c.copyBody(rest)
	}, true)
}

// bindName reads a NUL-terminated name at the start of a Bind.
func (c *txClient) bindName() (string, error) {
	b, err := c.s.crd.r.ReadSlice(0)
	switch {
	case errors.Is(err, bufio.ErrBufferFull):
		return "", pgerr.New(pgerrcode.ProtocolViolation, "invalid Bind message: name too long")
	case err != nil:
		return "", c.readFailed(err)
	}
	return string(b[:len(b)-1]), nil
}

// execute forwards an Execute, or runs the rewrite of the transaction control the
// portal holds.
func (c *txClient) execute(body []byte) error {
	portal, _, ok := cstring(body)
	if !ok {
		return pgerr.New(pgerrcode.ProtocolViolation, "invalid Execute message")
	}
	if err := c.beginSQL(); err != nil {
		return err
	}
	c.unitRuns = true
	t, tracked := c.portals[portal]
	c.noteDDL(t)
	if !c.skipMode {
		c.noteHold(t)
	}
	if t.copy {
		c.copyAt = c.cn.pushed() + 1
	}
	if c.s.names != nil && len(body) >= len(portal)+5 {
		body = append(append([]byte(c.use('P', portal)), 0), body[len(portal)+1:len(portal)+5]...)
	}
	if !tracked || !t.control() && !t.local.needs(c.stashed) || c.skipMode {
		c.noteRan(t)
		return c.sendRaw(pending{msg: 'E', hint: t.noTx(), ch: t.ch}, 'E', body, false)
	}
	plan, err := c.rewrite(t, false)
	if err != nil {
		return err
	}
	switch {
	case plan == nil:
		return c.sendRaw(pending{msg: 'E', ch: t.ch}, 'E', body, false)
	case len(plan) == 1 && plan[0].sql == standIn(t):
		// The client's portal holds the very statement: run it, so the server treats
		// the client's portal as a plain server would.
		ps := plan[0]
		return c.sendRaw(pending{msg: 'E', role: ps.role, tag: ps.tag, ok: ps.ok, fail: ps.fail}, 'E', body, false)
	}
	for _, ps := range plan {
		if clientPart(ps) {
			if err := c.sendRaw(pending{msg: 'E', ch: t.ch}, 'E', body, false); err != nil {
				return err
			}
			continue
		}
		if err := c.inject(ps, false); err != nil {
			return err
		}
	}
	return nil
}

// describeOrClose forwards a Describe or Close, forgetting what a Close removes.
func (c *txClient) describeOrClose(typ byte, body []byte) error {
	if len(body) < 2 {
		return pgerr.New(pgerrcode.ProtocolViolation, fmt.Sprintf("invalid message type %q", typ))
	}
	kind := body[0]
	name, _, _ := cstring(body[1:])
	if err := c.beginSQL(); err != nil {
		return err
	}
	if c.s.names != nil {
		body = append([]byte{kind}, append([]byte(c.use(kind, name)), 0)...)
	}
	if typ == 'C' {
		if kind == 'S' {
			delete(c.stmts, name)
		} else {
			delete(c.portals, name)
		}
		if c.s.names != nil {
			c.s.names.forget(kind, name)
		}
	}
	return c.sendRaw(pending{msg: typ}, typ, body, false)
}
