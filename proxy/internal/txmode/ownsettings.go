package txmode

import (
	"maps"
	"strings"
	"sync"
)

// Settings each connection of a shared session key keeps as its own.
//
// The connections of a key share one backend, and so its settings: what one sets, the
// others would see. For the settings the server reports (ParameterStatus) and a client
// library reads back or depends on — its encoding, how strings are quoted, the date,
// interval and time zone formats, its application name, whether its transactions are
// read-only by default (readonly.go) — the proxy keeps each
// connection's own value, as the server reported it to that connection: a connection
// starts with the values the backend had when the lease (or its reset for a new
// connection) began, which are the first connection's startup settings, and then
// follows its own SETs, RESETs and rollbacks. When a connection's unit starts while the
// backend holds another connection's values, the proxy sets the connection's own back
// first, in the same write as the unit's savepoint statements and outside the
// savepoint where there is one to release (a failed unit rolls its own change back,
// not the restore; where the restore went inside a clean savepoint and the unit fails,
// the server's rollback undoes it too and the next unit sets it again). The server then
// reports the value to that connection, which already has it. pgbouncer keeps the same
// settings per client for the same reason.
//
// Not covered: settings the server does not report but search_path (ownpath.go), which
// the connections of a key share as they share temporary tables; a connection that
// joins while others are attached gets the first connection's values of these
// settings but application_name and default_transaction_read_only, not its own
// startup packet's (its other startup
// settings apply only when the lease had no connection: Lease.Attach).

// ownNames are the reported settings kept per connection, as the server names them.
var ownNames = []string{"application_name", "client_encoding", "DateStyle", "IntervalStyle", "TimeZone", "standard_conforming_strings",
	"default_transaction_read_only"}

// ownName returns the server's name of a kept setting, or "" for another.
func ownName(name string) string {
	for _, n := range ownNames {
		if n == name {
			return n
		}
	}
	return ""
}

// ownSettings is a session's own values of the kept settings.
type ownSettings struct {
	mu   sync.Mutex
	vals map[string]string // nil: not kept (the lease is not shared)
	path ownPath           // ownpath.go
}

// keptParams returns the kept settings of params.
func keptParams(params map[string]string) map[string]string {
	vals := make(map[string]string, len(ownNames))
	for _, n := range ownNames {
		if v, ok := params[n]; ok {
			vals[n] = v
		}
	}
	return vals
}

// snapBase records the backend's kept settings as a lease (or a reset for a new
// connection) begins: what a connection joining later starts with.
func (b *Backend) snapBase() {
	b.pmu.Lock()
	defer b.pmu.Unlock()
	b.base = keptParams(b.params)
	b.path = backendPath{}
}

// seedOwn starts keeping s's own settings on a shared lease, from the backend's values
// as the lease began; a session that joins others takes its startup packet's
// application_name (any value is valid, so setting it cannot fail; the other kept
// settings of a joiner's startup packet, which the server would have to check, are
// not applied).
func (s *Session) seedOwn(b *Backend, joiner bool, st Startup) {
	b.pmu.Lock()
	base := b.base
	if base == nil {
		base = keptParams(b.params)
	}
	b.pmu.Unlock()
	vals := maps.Clone(base)
	if joiner {
		for _, kv := range st.Settings {
			switch {
			case strings.EqualFold(kv[0], "application_name"):
				vals["application_name"] = kv[1]
			case strings.EqualFold(kv[0], "default_transaction_read_only"):
				if v, ok := boolSetting(kv[1]); ok {
					vals["default_transaction_read_only"] = v
				}
			}
		}
	}
	s.own.mu.Lock()
	s.own.vals = vals
	s.own.mu.Unlock()
}

// noteOwn records a ParameterStatus body the server sent to s's client.
func (s *Session) noteOwn(body []byte) {
	if s == nil {
		return
	}
	name, rest, ok1 := cstring(body)
	value, _, ok2 := cstring(rest)
	if !ok1 || !ok2 || ownName(name) == "" {
		return
	}
	s.own.mu.Lock()
	if s.own.vals != nil {
		s.own.vals[name] = value
	}
	s.own.mu.Unlock()
}

// greetParams is what s's client is told at start-up: the backend's values, with s's
// own for the kept settings.
func (s *Session) greetParams(params map[string]string) map[string]string {
	s.own.mu.Lock()
	defer s.own.mu.Unlock()
	if s.own.vals == nil {
		return params
	}
	out := maps.Clone(params)
	maps.Copy(out, s.own.vals)
	return out
}

// boolSetting returns a boolean setting's value as the server shows it, if v is one
// the server takes.
func boolSetting(v string) (string, bool) {
	switch strings.ToLower(strings.TrimSpace(v)) {
	case "on", "true", "yes", "1", "t", "y":
		return "on", true
	case "off", "false", "no", "0", "f", "n":
		return "off", true
	}
	return "", false
}

// ownRestore returns the statement that sets the backend's kept settings that differ
// from s's own back to s's, or "" when none differs.
func (s *Session) ownRestore(b *Backend) string {
	s.own.mu.Lock()
	defer s.own.mu.Unlock()
	if s.own.vals == nil {
		return ""
	}
	var sets []string
	b.pmu.Lock()
	for _, n := range ownNames {
		if v, ok := s.own.vals[n]; ok && b.params[n] != v {
			sets = append(sets, "pg_catalog.set_config("+quoteLiteral(n)+", "+quoteLiteral(v)+", false)")
			// The unit's read-only savepoint (readonly.go) follows the value now, not
			// when the server reports it after the unit.
			b.noteReadOnly(n, v)
		}
	}
	if p := s.pathRestore(b); p != "" {
		sets = append(sets, p)
	}
	b.pmu.Unlock()
	if len(sets) == 0 {
		return ""
	}
	return "SELECT " + strings.Join(sets, ", ")
}
