package proxy

import (
	"context"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/jackc/pgerrcode"
	"github.com/jackc/pgx/v5/pgproto3"
	"go.uber.org/zap"

	"github.com/pgtestproxy/pgtestproxy/internal/pgerr"
	"github.com/pgtestproxy/pgtestproxy/proxy/internal/wire"
)

// adminTimeout bounds one admin console statement.
const adminTimeout = 30 * time.Second

// textOID is the type of every admin console column.
const textOID = 25

// adminCommands are the statements the console understands, for SHOW HELP and errors.
var adminCommands = [][]string{
	{"SHOW TEMPLATES", "templates and their migrations"},
	{"SHOW POOLS", "warm clones per template"},
	{"SHOW LEASES", "databases leased now"},
	{"SHOW STATS", "the proxy's counters"},
	{"SHOW VERSION", "the proxy's version"},
	{"SHOW HELP", "this list"},
}

// adminSession is a client of the admin console. It speaks the simple query protocol
// only, like pgbouncer's console.
type adminSession struct {
	s    *Server
	cc   *clientConn
	conn net.Conn
	out  *wire.MsgBuffer
	skip bool // an extended-protocol message failed: ignore until Sync
}

// cut ends the console session from outside.
func (a *adminSession) Cut() {
	wire.Interrupt(a.conn)
	_ = a.conn.SetWriteDeadline(time.Now().Add(wire.GoodbyeWriteTimeout))
}

// runAdmin greets an admin console client and answers its statements until it leaves.
func (s *Server) runAdmin(cc *clientConn, conn net.Conn, out *wire.MsgBuffer) {
	a := &adminSession{s: s, cc: cc, conn: conn, out: out}
	cc.setRunner(a, nil)
	for _, p := range [][2]string{{"server_version", s.cfg.Version}, {"server_encoding", "UTF8"},
		{"client_encoding", "UTF8"}, {"DateStyle", "ISO, MDY"}, {"integer_datetimes", "on"},
		{"standard_conforming_strings", "on"}} {
		out.Add(&pgproto3.ParameterStatus{Name: p[0], Value: p[1]})
	}
	out.Add(&pgproto3.ReadyForQuery{TxStatus: 'I'})
	if out.Flush(conn) != nil {
		return
	}
	for {
		typ, body, err := wire.ReadMessage(conn, wire.MaxFrontendMessage)
		if err != nil {
			s.refuse(cc, conn, out, err)
			return
		}
		s.guard.At("console")
		if done, err := a.handle(typ, body); done || err != nil {
			if err != nil {
				s.refuse(cc, conn, out, err)
			}
			return
		}
	}
}

// handle answers one client message; done means the client said goodbye.
func (a *adminSession) handle(typ byte, body []byte) (done bool, err error) {
	switch typ {
	case 'Q':
		var q pgproto3.Query
		if err := q.Decode(body); err != nil {
			return false, pgerr.New(pgerrcode.ProtocolViolation, "invalid Query message: "+err.Error())
		}
		a.query(q.String)
		a.out.Add(&pgproto3.ReadyForQuery{TxStatus: 'I'})
	case 'X':
		return true, nil
	case 'S':
		a.skip = false
		a.out.Add(&pgproto3.ReadyForQuery{TxStatus: 'I'})
	case 'H':
	case 'P', 'B', 'D', 'E', 'C', 'F':
		if !a.skip {
			a.fail(pgerr.New(pgerrcode.FeatureNotSupported,
				"the pgtestproxy admin console supports only the simple query protocol"))
			a.skip = true
		}
	case 'd', 'c', 'f':
		// COPY data outside COPY is ignored, as PostgreSQL does.
	default:
		return false, pgerr.New(pgerrcode.ProtocolViolation, fmt.Sprintf("invalid frontend message type %q", typ))
	}
	return false, a.out.Flush(a.conn)
}

// query answers one simple Query.
func (a *adminSession) query(sql string) {
	stmt := strings.TrimSpace(strings.TrimRight(strings.TrimSpace(sql), ";"))
	if stmt == "" {
		a.out.Add(&pgproto3.EmptyQueryResponse{})
		return
	}
	columns, rows, err := a.answer(stmt)
	if err != nil {
		a.fail(err)
		return
	}
	fields := make([]pgproto3.FieldDescription, len(columns))
	for i, c := range columns {
		fields[i] = pgproto3.FieldDescription{Name: []byte(c), DataTypeOID: textOID, DataTypeSize: -1, TypeModifier: -1}
	}
	a.out.Add(&pgproto3.RowDescription{Fields: fields})
	for _, row := range rows {
		values := make([][]byte, len(row))
		for i, v := range row {
			values[i] = []byte(v)
		}
		a.out.Add(&pgproto3.DataRow{Values: values})
	}
	a.out.Add(&pgproto3.CommandComplete{CommandTag: []byte("SHOW")})
}

// answer runs one statement of the console.
func (a *adminSession) answer(stmt string) (columns []string, rows [][]string, err error) {
	words := strings.Fields(strings.ToUpper(stmt))
	if len(words) != 2 || words[0] != "SHOW" {
		return nil, nil, unknownAdminCommand(pgerrcode.SyntaxError, stmt)
	}
	switch words[1] {
	case "TEMPLATES", "POOLS", "LEASES":
		if a.s.cfg.Admin == nil {
			return nil, nil, pgerr.New(pgerrcode.FeatureNotSupported,
				fmt.Sprintf("SHOW %s is not available: this proxy has no lease provider console", words[1]))
		}
		ctx, cancel := context.WithTimeout(a.s.baseCtx, adminTimeout)
		defer cancel()
		return a.s.cfg.Admin(ctx, words[1])
	case "STATS":
		columns, rows = a.s.Stats().table()
		return columns, rows, nil
	case "VERSION":
		return []string{"version"}, [][]string{{"pgtestproxy " + a.s.cfg.Version}}, nil
	case "HELP":
		return []string{"command", "description"}, adminCommands, nil
	}
	return nil, nil, unknownAdminCommand(pgerrcode.UndefinedObject, stmt)
}

func unknownAdminCommand(code, stmt string) error {
	names := make([]string, len(adminCommands))
	for i, c := range adminCommands {
		names[i] = c[0]
	}
	return &pgerr.Error{Code: code,
		Message: fmt.Sprintf("unrecognized admin console command %q", stmt),
		Hint:    "The pgtestproxy console understands " + strings.Join(names, ", ") + "."}
}

// fail sends an ERROR; the session goes on.
func (a *adminSession) fail(err error) {
	resp := wire.ErrorResponse("ERROR", err)
	a.s.stats.Errors.Add(1)
	a.s.log.Debug("admin console error", zap.String("code", resp.Code), zap.String("message", resp.Message))
	a.out.Add(resp)
}
