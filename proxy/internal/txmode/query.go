package txmode

import (
	"strings"
	"unicode/utf8"

	"github.com/jackc/pgerrcode"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/pgtestproxy/pgtestproxy/internal/sqllex"
)

// queryPlan is a client's simple-protocol Query as the proxy rewrote it: the server
// statements of the new query string in order, each with what to do with its replies,
// and how to map an error position in the new string back to the client's.
type queryPlan struct {
	stmts []planStmt
	cur   int // the statement whose replies arrive now
	segs  []segment
	orig  string // the client's query string
	text  string // the string sent to the server
	// held is the CommandComplete of the client's last statement, held until the
	// deferred check after it (the last of stmts) succeeds: a plain server commits the
	// implicit transaction before it sends the last CommandComplete of a query string.
	held     *pgproto3.CommandComplete
	checkAt  int // 1 + the byte offset of the ';' before the unit's deferred check, if there is one
	checkIdx int // the index of that check in stmts
	// releaseIdx: the last statement of the commit the held CommandComplete waits for
	// (the check, or the materialisation of cursors WITH HOLD after it).
	releaseIdx int
	// endAt: as checkAt, for the ';' before the first statement of the proxy's after
	// the client's (the search_path read, the idle guard) when no check comes first.
	endAt int
}

// endOfInput rewrites a syntax error the server reported at the ';' the proxy put
// before its deferred check as the error at the end of the client's string that a
// plain server reports.
func (p *queryPlan) endOfInput(e *pgproto3.ErrorResponse) {
	const near = ` at or near ";"`
	at := p.checkAt
	if at == 0 {
		at = p.endAt
	}
	if at > 0 && e.Code == pgerrcode.SyntaxError && strings.HasSuffix(e.Message, near) &&
		byteOffset(p.text, int(e.Position)-1) == at-1 {
		e.Message = strings.TrimSuffix(e.Message, near) + " at end of input"
	}
}

// holds reports whether the CommandComplete of the statement now answered is held for
// the deferred check that follows it.
func (p *queryPlan) holds() bool {
	return p.checkAt > 0 && p.cur+1 == p.checkIdx
}

// segment maps a piece of the server's query string to the client's.
type segment struct {
	newStart, newEnd   int
	origStart, origEnd int
	same               bool // the client's own text: positions map one to one
}

// stmt returns the statement whose replies arrive now; past the end (a server that
// sent more results than planned) it is the client's.
func (p *queryPlan) stmt() *planStmt {
	if p.cur < len(p.stmts) {
		return &p.stmts[p.cur]
	}
	return &planStmt{role: roleClient}
}

// queryBuilder assembles a queryPlan piece by piece.
type queryBuilder struct {
	plan    queryPlan
	b       strings.Builder
	changed bool
}

// keep adds a piece of the client's query as written; real says it is a statement
// (not only whitespace and comments), which the server answers.
func (qb *queryBuilder) keep(st *sqllex.Statement, real bool) {
	qb.sep()
	start := qb.b.Len()
	qb.b.WriteString(st.Text)
	qb.plan.segs = append(qb.plan.segs, segment{newStart: start, newEnd: qb.b.Len(),
		origStart: st.Start, origEnd: st.End, same: true})
	if real {
		qb.plan.stmts = append(qb.plan.stmts, planStmt{role: roleClient})
	}
}

// note marks the client statement just kept as a LISTEN, UNLISTEN or NOTIFY, whose
// completion the server pump notes; the string then needs a plan even if it is sent
// as written.
func (qb *queryBuilder) note(ch *chanOp) {
	if ch != nil {
		qb.plan.stmts[len(qb.plan.stmts)-1].ch = ch
		qb.changed = true
	}
}

// replace adds the server statements that stand for a piece of the client's query.
func (qb *queryBuilder) replace(st *sqllex.Statement, stmts []planStmt) {
	qb.sep()
	qb.changed = true
	start := qb.b.Len()
	for i, ps := range stmts {
		if i > 0 {
			qb.b.WriteByte(';')
		}
		qb.b.WriteString(ps.sql)
	}
	qb.plan.segs = append(qb.plan.segs, segment{newStart: start, newEnd: qb.b.Len(),
		origStart: st.Start, origEnd: st.End})
	qb.plan.stmts = append(qb.plan.stmts, stmts...)
}

// stmts returns how many statements the server will answer so far.
func (qb *queryBuilder) stmts() int { return len(qb.plan.stmts) }

// check appends the check of deferred constraints that ends an autocommit unit; its
// errors map to the end of the client's string. It begins on a new line, in case the
// client's string ends in a comment; a syntax error at the end of the client's
// string is then reported at its ';' (endOfInput).
func (qb *queryBuilder) check(end int) {
	qb.commits()
	qb.add(checkPart(effNone), end)
}

// commits marks the start of the statements of an autocommit unit's commit, which
// can fail: the CommandComplete of the client's last statement is held until the last
// of them (commitsTo) succeeds, as a plain server commits before it sends that.
func (qb *queryBuilder) commits() {
	if qb.plan.checkAt > 0 {
		return
	}
	qb.b.WriteByte('\n')
	qb.plan.checkAt, qb.plan.checkIdx = qb.b.Len()+1, len(qb.plan.stmts)
	qb.plan.releaseIdx = qb.plan.checkIdx
}

// commitsTo appends ps, a statement of the commit's that can fail, and makes it the
// last the held CommandComplete waits for.
func (qb *queryBuilder) commitsTo(ps planStmt, end int) {
	qb.plan.releaseIdx = len(qb.plan.stmts)
	qb.add(ps, end)
}

// add appends a statement of the proxy's at the end of the client's string.
func (qb *queryBuilder) add(ps planStmt, end int) {
	qb.sep()
	qb.changed = true
	start := qb.b.Len()
	qb.b.WriteString(ps.sql)
	qb.plan.segs = append(qb.plan.segs, segment{newStart: start, newEnd: qb.b.Len(), origStart: end, origEnd: end})
	qb.plan.stmts = append(qb.plan.stmts, ps)
}

// end adds a statement of the proxy's after the client's last one, on a line of its
// own (the client's string may end in a comment).
func (qb *queryBuilder) end(ps planStmt, end int) {
	qb.b.WriteByte('\n')
	if qb.plan.checkAt == 0 && qb.plan.endAt == 0 {
		qb.plan.endAt = qb.b.Len() + 1
	}
	qb.add(ps, end)
}

func (qb *queryBuilder) sep() {
	if len(qb.plan.segs) > 0 {
		qb.b.WriteByte(';')
	}
}

// done returns the plan, or nil when nothing was rewritten.
func (qb *queryBuilder) done(orig string) *queryPlan {
	if !qb.changed {
		return nil
	}
	qb.plan.orig, qb.plan.text = orig, qb.b.String()
	return &qb.plan
}

// lastReal reports whether no piece after i is a statement.
func lastReal(pieces []sqllex.Statement, i int) bool {
	for _, p := range pieces[i+1:] {
		if p.Kind != sqllex.Empty {
			return false
		}
	}
	return true
}

// mapPosition maps a 1-based character position in the server's query string to the
// client's; a position inside text the proxy wrote maps to the start of the client
// statement it stands for.
func (p *queryPlan) mapPosition(pos int32) int32 {
	if pos <= 0 {
		return pos
	}
	b := byteOffset(p.text, int(pos)-1)
	for _, s := range p.segs {
		if b < s.newStart || b > s.newEnd {
			continue
		}
		o := s.origStart
		if s.same {
			o += b - s.newStart
		} else {
			o += leadingSpace(p.orig[s.origStart:s.origEnd])
		}
		return int32(utf8.RuneCountInString(p.orig[:min(o, len(p.orig))])) + 1
	}
	return int32(utf8.RuneCountInString(p.orig)) + 1
}

// byteOffset returns the byte offset of the n-th character of s (0-based).
func byteOffset(s string, n int) int {
	for i := range s {
		if n == 0 {
			return i
		}
		n--
	}
	return len(s)
}

// leadingSpace returns the length of the whitespace at the start of s.
func leadingSpace(s string) int {
	return len(s) - len(strings.TrimLeft(s, " \t\n\r\f\v"))
}
