package txmode

// Each connection of a shared session key keeps its own search_path too.
//
// The server does not report search_path (PostgreSQL 15), so the proxy reads it: a
// unit that ends outside the client's block, after a statement of the session's that
// may have set it (one that names search_path, SET SCHEMA, or any RESET or DISCARD,
// since the block began when it is in one), ends with sqlPathRead, whose row is the
// value the session now has and, the first time in a lease, the value the lease
// began with (reset_val: the backend's startup value), which every connection that
// never set it keeps. A unit that fails is rolled back, with what it set, so nothing
// is read then. When a connection's unit starts while the backend holds another
// connection's search_path, the proxy sets its own back first (ownsettings.go,
// ownRestore), outside the savepoint. Until some connection of the lease sets it,
// nothing is read or set. Not covered: a routine of the template that sets it with
// set_config(…, false) where the client's statement does not name it.

// sqlPathRead reads the session's search_path and the backend's startup value.
const sqlPathRead = "SELECT pg_catalog.current_setting('search_path'), s.reset_val FROM pg_catalog.pg_settings s " +
	"WHERE s.name OPERATOR(pg_catalog.=) 'search_path'"

// mentionsPath reports whether a statement whose first word is kw (lower case) may set
// the session's search_path.
func mentionsPath(kw, text string) bool {
	switch kw {
	case "reset", "discard":
		return true
	case "set":
		if containsFold(text, "schema") {
			return true
		}
	}
	return containsFold(text, "search_path")
}

// ownPath is a session's own search_path. Under ownSettings.mu.
type ownPath struct {
	val string
	set bool // the session set it: else it has the lease's base
}

// backendPath is what the proxy knows of the backend's search_path. Under Backend.pmu.
type backendPath struct {
	inPlay bool   // a connection of the lease set it: cur and base are known
	cur    string // the backend's value now
	base   string // the value the lease began with
}

// notePath notes a client statement that may set search_path: the unit that ends
// the session's block, or this one outside a block, reads it. Only on shared leases.
func (c *txClient) notePath(t txStmt) {
	if t.path && c.s.names != nil {
		c.pathMention = true
	}
}

// pathRead returns the read for the end of a unit that ends outside the client's
// block, when the session may have set its search_path.
func (c *txClient) pathRead() (planStmt, bool) {
	if !c.pathMention || c.skipMode || c.st.block {
		return planStmt{}, false
	}
	c.pathMention = false
	return planStmt{sql: sqlPathRead, role: rolePart, path: true}, true
}

// notePathRow records sqlPathRead's row for s.
func (c *txConn) notePathRow(s *Session, row []string) {
	if len(row) != 2 {
		return
	}
	b := c.be
	b.pmu.Lock()
	if !b.path.inPlay {
		b.path = backendPath{inPlay: true, base: row[1]}
	}
	b.path.cur = row[0]
	b.pmu.Unlock()
	if s == nil {
		return
	}
	s.own.mu.Lock()
	s.own.path = ownPath{val: row[0], set: true}
	s.own.mu.Unlock()
}

// pathRestore returns the set_config call that gives the backend s's own search_path,
// or "" when it has it. s.own.mu and b.pmu are held; the backend's value is taken to
// be s's from now on (the restore runs outside any savepoint, so nothing undoes it).
func (s *Session) pathRestore(b *Backend) string {
	if !b.path.inPlay {
		return ""
	}
	want := b.path.base
	if s.own.path.set {
		want = s.own.path.val
	}
	if want == b.path.cur {
		return ""
	}
	b.path.cur = want
	return "pg_catalog.set_config('search_path', " + quoteLiteral(want) + ", false)"
}
