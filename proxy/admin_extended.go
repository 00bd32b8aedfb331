package proxy

import (
	"fmt"

	"github.com/jackc/pgerrcode"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/pgtestproxy/pgtestproxy/internal/pgerr"
)

// extended answers one extended-protocol message of the console. Statements take no
// parameters; every column is text, whatever result format the client asks for (text
// and binary text are the same bytes).
func (a *adminSession) extended(typ byte, body []byte) error {
	switch typ {
	case 'P':
		var m pgproto3.Parse
		if err := m.Decode(body); err != nil {
			return pgerr.New(pgerrcode.ProtocolViolation, "invalid Parse message: "+err.Error())
		}
		if len(m.ParameterOIDs) > 0 {
			return pgerr.New(pgerrcode.FeatureNotSupported, "admin console statements take no parameters")
		}
		a.stmts[m.Name] = trimStatement(m.Query)
		a.out.Add(&pgproto3.ParseComplete{})
	case 'B':
		var m pgproto3.Bind
		if err := m.Decode(body); err != nil {
			return pgerr.New(pgerrcode.ProtocolViolation, "invalid Bind message: "+err.Error())
		}
		stmt, ok := a.stmts[m.PreparedStatement]
		if !ok {
			return pgerr.New(pgerrcode.InvalidSQLStatementName, fmt.Sprintf("prepared statement %q does not exist", m.PreparedStatement))
		}
		if len(m.Parameters) > 0 {
			return pgerr.New(pgerrcode.ProtocolViolation, "admin console statements take no parameters")
		}
		a.portals[m.DestinationPortal] = &adminPortal{stmt: stmt}
		a.out.Add(&pgproto3.BindComplete{})
	case 'D':
		var m pgproto3.Describe
		if err := m.Decode(body); err != nil {
			return pgerr.New(pgerrcode.ProtocolViolation, "invalid Describe message: "+err.Error())
		}
		return a.describe(m.ObjectType, m.Name)
	case 'E':
		var m pgproto3.Execute
		if err := m.Decode(body); err != nil {
			return pgerr.New(pgerrcode.ProtocolViolation, "invalid Execute message: "+err.Error())
		}
		return a.execute(m.Portal)
	case 'C':
		var m pgproto3.Close
		if err := m.Decode(body); err != nil {
			return pgerr.New(pgerrcode.ProtocolViolation, "invalid Close message: "+err.Error())
		}
		if m.ObjectType == 'S' {
			delete(a.stmts, m.Name)
		} else {
			delete(a.portals, m.Name)
		}
		a.out.Add(&pgproto3.CloseComplete{})
	}
	return nil
}

// describe answers a Describe: of a statement, its columns without running it; of a
// portal, by running it (a portal runs once), keeping the rows for the Execute.
func (a *adminSession) describe(kind byte, name string) error {
	if kind == 'S' {
		stmt, ok := a.stmts[name]
		if !ok {
			return pgerr.New(pgerrcode.InvalidSQLStatementName, fmt.Sprintf("prepared statement %q does not exist", name))
		}
		a.out.Add(&pgproto3.ParameterDescription{})
		if stmt == "" {
			a.out.Add(&pgproto3.NoData{})
			return nil
		}
		res, err := a.answer(stmt, true)
		if err != nil {
			return err
		}
		a.out.Add(rowDescription(res.columns))
		return nil
	}
	p, err := a.portal(name)
	if err != nil || p.stmt == "" {
		if err == nil {
			a.out.Add(&pgproto3.NoData{})
		}
		return err
	}
	if p.res, err = a.answer(p.stmt, false); err != nil {
		return err
	}
	a.out.Add(rowDescription(p.res.columns))
	return nil
}

// execute runs a portal (or sends what its Describe found).
func (a *adminSession) execute(name string) error {
	p, err := a.portal(name)
	if err != nil {
		return err
	}
	if p.stmt == "" {
		a.out.Add(&pgproto3.EmptyQueryResponse{})
		return nil
	}
	res := p.res
	if res == nil {
		if res, err = a.answer(p.stmt, false); err != nil {
			return err
		}
	}
	p.res = nil
	a.sendRows(res)
	return nil
}

func (a *adminSession) portal(name string) (*adminPortal, error) {
	p, ok := a.portals[name]
	if !ok {
		return nil, pgerr.New(pgerrcode.InvalidCursorName, fmt.Sprintf("portal %q does not exist", name))
	}
	return p, nil
}
