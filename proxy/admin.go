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
	{"SHOW TEMPLATES", "templates: hash, migrations, build and clone timings, last use"},
	{"SHOW POOLS", "warm clones per template"},
	{"SHOW LEASES", "databases leased now"},
	{"SHOW STATS", "the proxy's and the pool's counters"},
	{"SHOW VERSION", "the proxy's version"},
	{"SHOW HELP", "this list"},
	{"GC", "run a gc pass now and list what it dropped"},
	{"RELOAD", "hash the migrations again; a changed template is rebuilt for the next lease"},
}

// adminSession is a client of the admin console. It answers the simple query
// protocol, like pgbouncer's console, and the extended protocol's
// Parse/Bind/Describe/Execute/Sync (statements without parameters), as drivers such as
// pgx send by default.
type adminSession struct {
	s       *Server
	cc      *clientConn
	conn    net.Conn
	out     *wire.MsgBuffer
	skip    bool                    // an extended-protocol message failed: ignore until Sync
	stmts   map[string]string       // prepared statements: name → text
	portals map[string]*adminPortal // bound portals
}

// adminPortal is a bound statement; a Describe runs it, so the Execute that follows
// sends what that run found.
type adminPortal struct {
	stmt string
	res  *adminResult
}

// adminResult is one statement's answer.
type adminResult struct {
	columns []string
	rows    [][]string
	tag     string
}

// cut ends the console session from outside.
func (a *adminSession) Cut() {
	wire.Interrupt(a.conn)
	_ = a.conn.SetWriteDeadline(time.Now().Add(wire.GoodbyeWriteTimeout))
}

// runAdmin greets an admin console client and answers its statements until it leaves.
func (s *Server) runAdmin(cc *clientConn, conn net.Conn, out *wire.MsgBuffer) {
	a := &adminSession{s: s, cc: cc, conn: conn, out: out, stmts: map[string]string{}, portals: map[string]*adminPortal{}}
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
	case 'P', 'B', 'D', 'E', 'C':
		if !a.skip {
			if err := a.extended(typ, body); err != nil {
				if pgerr.SQLState(err) == pgerrcode.ProtocolViolation {
					return false, err
				}
				a.fail(err)
				a.skip = true
			}
		}
	case 'F':
		if !a.skip {
			a.fail(pgerr.New(pgerrcode.FeatureNotSupported, "the pgtestproxy admin console has no functions to call"))
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
	stmt := trimStatement(sql)
	if stmt == "" {
		a.out.Add(&pgproto3.EmptyQueryResponse{})
		return
	}
	res, err := a.answer(stmt, false)
	if err != nil {
		a.fail(err)
		return
	}
	a.out.Add(rowDescription(res.columns))
	a.sendRows(res)
}

func trimStatement(sql string) string {
	return strings.TrimSpace(strings.TrimRight(strings.TrimSpace(sql), ";"))
}

func rowDescription(columns []string) *pgproto3.RowDescription {
	fields := make([]pgproto3.FieldDescription, len(columns))
	for i, c := range columns {
		fields[i] = pgproto3.FieldDescription{Name: []byte(c), DataTypeOID: textOID, DataTypeSize: -1, TypeModifier: -1}
	}
	return &pgproto3.RowDescription{Fields: fields}
}

// sendRows sends a result's rows and its CommandComplete.
func (a *adminSession) sendRows(res *adminResult) {
	for _, row := range res.rows {
		values := make([][]byte, len(row))
		for i, v := range row {
			values[i] = []byte(v)
		}
		a.out.Add(&pgproto3.DataRow{Values: values})
	}
	a.out.Add(&pgproto3.CommandComplete{CommandTag: []byte(res.tag)})
}

// answer runs one statement of the console; describe asks only for its columns,
// without doing what the statement does (an extended-protocol Describe of a
// statement).
func (a *adminSession) answer(stmt string, describe bool) (*adminResult, error) {
	words := strings.Fields(strings.ToUpper(stmt))
	what := strings.Join(words, " ")
	switch what {
	case "GC", "RELOAD":
		return a.provider(what, what, describe, nil)
	case "SHOW TEMPLATES", "SHOW POOLS":
		return a.provider(words[1], "SHOW", describe, nil)
	case "SHOW LEASES":
		res, err := a.provider(words[1], "SHOW", describe, nil)
		if err == nil {
			res.columns, res.rows = a.s.leases.join(res.columns, res.rows)
		}
		return res, err
	case "SHOW STATS":
		stats := a.s.Stats()
		if a.s.cfg.Admin == nil {
			columns, rows := stats.table(nil, nil)
			return &adminResult{columns, rows, "SHOW"}, nil
		}
		return a.provider("STATS", "SHOW", describe, &stats)
	case "SHOW VERSION":
		return &adminResult{[]string{"version"}, [][]string{{"pgtestproxy " + a.s.cfg.Version}}, "SHOW"}, nil
	case "SHOW HELP":
		return &adminResult{[]string{"command", "description"}, adminCommands, "SHOW"}, nil
	}
	if len(words) == 2 && words[0] == "SHOW" {
		return nil, unknownAdminCommand(pgerrcode.UndefinedObject, stmt)
	}
	return nil, unknownAdminCommand(pgerrcode.SyntaxError, stmt)
}

// provider answers a statement the lease provider owns (Config.Admin); stats, for
// SHOW STATS, go before the provider's own columns.
func (a *adminSession) provider(what, tag string, describe bool, stats *Stats) (*adminResult, error) {
	if a.s.cfg.Admin == nil {
		name := what
		if tag == "SHOW" {
			name = "SHOW " + what
		}
		return nil, pgerr.New(pgerrcode.FeatureNotSupported,
			fmt.Sprintf("%s is not available: this proxy has no lease provider console", name))
	}
	ctx, cancel := context.WithTimeout(a.s.baseCtx, adminTimeout)
	defer cancel()
	columns, rows, err := a.s.cfg.Admin(ctx, what, describe)
	if err != nil {
		return nil, err
	}
	if stats != nil {
		var row []string
		if len(rows) > 0 {
			row = rows[0]
		}
		columns, rows = stats.table(columns, row)
	}
	return &adminResult{columns, rows, tag}, nil
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
	a.s.stats.Error(resp.Code)
	a.s.log.Debug("admin console error", zap.String("code", resp.Code), zap.String("message", resp.Message))
	a.out.Add(resp)
}
