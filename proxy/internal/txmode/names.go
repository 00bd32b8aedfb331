package txmode

import (
	"strconv"
	"strings"
)

// txNames keeps the prepared statements and portals of one session apart from those of
// the other sessions on the same backend (connections that share a session key): each
// name the client gives becomes a name of the session's own on the server. The
// unnamed statement and portal become named ones too, which the proxy closes before
// the client replaces them, as the server would; a simple Query drops the client's
// unnamed statement and portal, as it does on a plain server. Names the client never
// prepared through the protocol (SQL PREPARE) are passed as written: they are shared.
type txNames struct {
	prefix  string
	stmts   map[string]string // client name → server name
	portals map[string]string
	next    int
}

func newTxNames(id int) *txNames {
	return &txNames{prefix: "pgtestproxy_c" + strconv.Itoa(id) + "_",
		stmts: map[string]string{}, portals: map[string]string{}}
}

// define returns the server name for a statement (kind 'S') or portal ('P') the
// client creates, and whether the server must close it first (the unnamed one, which
// the client replaces silently).
func (n *txNames) define(kind byte, name string) (server string, closeFirst bool) {
	m := n.table(kind)
	if s, ok := m[name]; ok {
		return s, name == ""
	}
	if name == "" {
		m[""] = n.prefix + string(kind|0x20) + "u"
		return m[""], true
	}
	n.next++
	m[name] = n.prefix + strconv.Itoa(n.next)
	return m[name], false
}

// use returns the server name of a statement or portal the client refers to.
func (n *txNames) use(kind byte, name string) string {
	if s, ok := n.table(kind)[name]; ok {
		return s
	}
	return name
}

// forget drops a name the client closed, or the unnamed ones a simple Query drops.
func (n *txNames) forget(kind byte, name string) { delete(n.table(kind), name) }

// dropPortals forgets the session's portals (only the unnamed one unless all) and
// returns their server names, for the caller to close.
func (n *txNames) dropPortals(all bool) []string {
	var out []string
	for client, server := range n.portals {
		if all || client == "" {
			out = append(out, server)
			delete(n.portals, client)
		}
	}
	return out
}

func (n *txNames) table(kind byte) map[string]string {
	if kind == 'S' {
		return n.stmts
	}
	return n.portals
}

// unmap puts the client's names back into a server message.
func (n *txNames) unmap(msg string) string {
	if !strings.Contains(msg, n.prefix) {
		return msg
	}
	for _, m := range []map[string]string{n.stmts, n.portals} {
		for client, server := range m {
			msg = strings.ReplaceAll(msg, `"`+server+`"`, `"`+client+`"`)
		}
	}
	return msg
}

// all returns the server names of the session's statements and portals.
func (n *txNames) all() (stmts, portals []string) {
	for _, s := range n.stmts {
		stmts = append(stmts, s)
	}
	for _, p := range n.portals {
		portals = append(portals, p)
	}
	return stmts, portals
}
