package txmode

import (
	"maps"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/pgtestproxy/pgtestproxy/internal/sqllex"
)

// A client's SQL-level DEALLOCATE on a shared session key.
//
// The prepared statements a connection of a shared key makes through the protocol
// have names of its own on the server (names.go). So DEALLOCATE name, naming one of
// them, deallocates the server's name for it (in both protocols), and DEALLOCATE ALL
// (in a query string) deallocates the connection's own statements only, not those of
// the key's other connections, which share the backend: on a plain server each has its
// own. The statements made with SQL-level PREPARE are shared by the key's connections
// (names.go), so DEALLOCATE ALL leaves them; a DEALLOCATE ALL prepared through the
// protocol runs as written.

// deallocAll is txStmt.dealloc for DEALLOCATE ALL.
const deallocAll = "\x00all"

// sqlNoop is the server statement that carries a command tag and does nothing.
const sqlNoop = "DO $pgtestproxy$BEGIN END$pgtestproxy$"

// deallocName returns the statement a DEALLOCATE names (deallocAll for ALL), or "" for
// another statement.
func deallocName(kw, text string) string {
	if kw != "deallocate" {
		return ""
	}
	w := sqllex.Words(text, 3)
	if len(w) >= 3 && strings.EqualFold(w[1], "prepare") {
		w = w[1:]
	}
	switch {
	case len(w) < 2:
		return ""
	case strings.EqualFold(w[1], "all"):
		return deallocAll
	}
	return identName(w[1])
}

// deallocServer returns the server's name of the session's statement a DEALLOCATE
// names, and forgets it; ok is false when the name is not one of the session's.
func (c *txClient) deallocServer(name string) (server string, ok bool) {
	if c.s.names == nil || name == "" || name == deallocAll {
		return "", false
	}
	server, ok = c.s.names.stmts[name]
	if ok {
		c.s.names.forget('S', name)
		delete(c.stmts, name)
	}
	return server, ok
}

// deallocate returns the rewrite of a DEALLOCATE in a query string on a shared
// session key, or nil when it runs as written.
func (c *txClient) deallocate(t txStmt) []planStmt {
	if c.s.names == nil || t.dealloc == "" {
		return nil
	}
	if t.dealloc != deallocAll {
		server, ok := c.deallocServer(t.dealloc)
		if !ok {
			return nil
		}
		return []planStmt{{sql: "DEALLOCATE " + pgx.Identifier{server}.Sanitize(), role: roleCarrier, tag: "DEALLOCATE"}}
	}
	var plan []planStmt
	for _, name := range slices.Sorted(maps.Keys(c.s.names.stmts)) {
		if name == "" {
			continue // DEALLOCATE ALL keeps the unnamed statement
		}
		server, _ := c.deallocServer(name)
		plan = append(plan, planStmt{sql: "DEALLOCATE " + pgx.Identifier{server}.Sanitize(), role: rolePart})
	}
	return append(plan, planStmt{sql: sqlNoop, role: roleCarrier, tag: "DEALLOCATE ALL"})
}
