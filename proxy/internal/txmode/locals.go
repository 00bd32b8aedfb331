package txmode

import (
	"regexp"
	"slices"
	"strings"

	"github.com/pgtestproxy/pgtestproxy/internal/sqllex"
)

// Settings local to a transaction. On a plain server SET LOCAL, set_config(…, true)
// and SET CONSTRAINTS end with the transaction. In tx mode the client's transaction
// (and a query string's implicit one, and an autocommit statement's) is the proxy's
// savepoint, whose RELEASE hands them on to the proxy's transaction, where they would
// last until the lease ends; PostgreSQL has no statement that ends only the local
// values. So the proxy keeps, on the server, the value each setting had before the
// transaction set it locally (the stash: a JSON object in the placeholder setting
// pgtestproxy.local, which pg_settings and SHOW ALL do not list) and sets those back
// where the client's transaction commits, before the savepoint is released. The stash
// is itself a setting of the transaction, so a rollback (to the proxy's savepoint or to
// one of the client's) undoes it together with what it stood for, and RESET ALL
// empties it as it resets what it stood for. A session-level SET or RESET of a stashed
// setting later in the same transaction updates its stash, since a plain server then
// keeps the session value.
//
// Which settings a statement may set locally is read from its text: SET LOCAL name,
// and set_config('name', …, true) (a name not written as a literal stashes every
// setting pg_settings lists), also in a DO block's body. A CREATE FUNCTION or
// PROCEDURE whose body does either makes every later transaction of the lease stash
// those settings at its start, so that a call from anywhere is covered. Statements
// that do neither cost nothing, and so do leases without such routines. The
// template's own routines are read once per backend, at its first lease
// (sqlTemplateLocals): what their bodies may set locally is stashed by every
// transaction of every lease on it.
//
// SET CONSTRAINTS ALL would leave the proxy's transaction with a state that applies to
// constraints created later in the lease; the proxy sets every deferrable constraint by
// name instead, and the commit's deferred check (sqlCheckDeferred) sets them back.

// sqlTemplateLocals returns the bodies of the clone's own routines (not the system's)
// that may set a setting locally, for bodyLocals.
const sqlTemplateLocals = `SELECT pg_catalog.string_agg(p.prosrc, E'\n') FROM pg_catalog.pg_proc p ` +
	`WHERE p.pronamespace OPERATOR(pg_catalog.<>) 'pg_catalog'::pg_catalog.regnamespace ` +
	`AND p.pronamespace OPERATOR(pg_catalog.<>) 'information_schema'::pg_catalog.regnamespace ` +
	`AND (p.prosrc OPERATOR(pg_catalog.~*) 'set\s+local\s' OR p.prosrc OPERATOR(pg_catalog.~*) 'set_config\s*\(')`

// spLocal is the placeholder setting that holds the stash.
const spLocal = "pgtestproxy.local"

// stashValue is the stash as a jsonb value, '{}' when empty.
const stashValue = `(COALESCE(NULLIF(pg_catalog.current_setting('` + spLocal + `', true), ''), '{}'))::pg_catalog.jsonb`

// sqlRestoreLocals sets every stashed setting back to its stashed value where it
// differs (a setting that did not exist before is set to the empty string, as a plain
// server leaves a placeholder), and empties the stash.
const sqlRestoreLocals = `DO $pgtestproxy$BEGIN PERFORM pg_catalog.set_config(r.key, COALESCE(r.value, ''), false) ` +
	`FROM pg_catalog.jsonb_each_text(` + stashValue + `) r ` +
	`WHERE pg_catalog.current_setting(r.key, true) IS DISTINCT FROM COALESCE(r.value, '') ` +
	`AND (r.value IS NOT NULL OR pg_catalog.current_setting(r.key, true) IS NOT NULL); ` +
	`PERFORM pg_catalog.set_config('` + spLocal + `', '', false); END$pgtestproxy$`

// localOp is what a client statement does to what ends with the transaction.
type localOp struct {
	stash       []string // settings it may set locally: stashed before it runs
	stashAll    bool     // it may set a setting whose name is not written: stash every setting
	session     []string // settings it sets for the session: a stash of them is updated after it
	sessionText string   // a SET or RESET of a setting for the session, read by sessionNames
	constraints string   // SET CONSTRAINTS ALL: "IMMEDIATE" or "DEFERRED"
	// routine: settings a routine it creates may set locally (CREATE FUNCTION or
	// PROCEDURE): the lease stashes them in every transaction from then on.
	routine []string
}

// classifyLocal reads what a statement whose first word is kw (lower case) does to
// settings local to the transaction.
func classifyLocal(kw, text string) localOp {
	switch kw {
	case "set":
		w := sqllex.Words(text, 2)
		if len(w) < 2 {
			return localOp{}
		}
		switch strings.ToLower(w[1]) {
		case "local", "constraints":
		default:
			// Which setting it names matters only once the transaction holds a
			// stash: sessionNames reads it then.
			return localOp{sessionText: text}
		}
		w = sqllex.Words(text, 8)
		if strings.EqualFold(w[1], "local") {
			if n := settingName(w[2:]); n != "" {
				return localOp{stash: []string{n}}
			}
			return localOp{}
		}
		if len(w) == 4 && strings.EqualFold(w[2], "all") {
			switch m := strings.ToUpper(w[3]); m {
			case "IMMEDIATE", "DEFERRED":
				return localOp{constraints: m}
			}
		}
		return localOp{}
	case "reset":
		return localOp{sessionText: text}
	case "do":
		return localOp{stash: bodyLocals(text)}
	case "create":
		return localOp{routine: bodyLocals(text)}
	}
	if !containsFold(text, "set_config") {
		return localOp{}
	}
	return setConfigCalls(text)
}

// sessionNames returns the settings a session-level SET or RESET names (none for
// RESET ALL, which empties the stash itself, and for what it cannot read), or those
// of set_config(…, false) calls.
func (l localOp) sessionNames() []string {
	if l.sessionText == "" {
		return l.session
	}
	w := sqllex.Words(l.sessionText, 8)
	if len(w) < 2 {
		return nil
	}
	switch {
	case strings.EqualFold(w[0], "reset"):
		if strings.EqualFold(w[1], "all") {
			return nil
		}
		w = w[1:]
	case strings.EqualFold(w[1], "session") && len(w) > 2 && strings.EqualFold(w[2], "authorization"):
		return []string{"session_authorization"}
	case strings.EqualFold(w[1], "session"):
		w = w[2:]
	default:
		w = w[1:]
	}
	if n := settingName(w); n != "" {
		return []string{n}
	}
	return nil
}

var (
	reSetLocal  = regexp.MustCompile(`(?i)\bset\s+local\s`)
	reSetConfig = regexp.MustCompile(`(?i)\bset_config\s*\(`)
)

// bodyLocals returns the settings the SQL in text, routine bodies (dollar-quoted)
// included, may set locally: SET LOCAL name and set_config('name', …, true).
func bodyLocals(text string) []string {
	if !containsFold(text, "set_config") && !containsFold(text, "local") {
		return nil
	}
	var names []string
	for _, m := range reSetLocal.FindAllStringIndex(text, -1) {
		if n := settingName(sqllex.Words(text[m[1]:], 6)); n != "" {
			names = append(names, n)
		}
	}
	for _, m := range reSetConfig.FindAllStringIndex(text, -1) {
		names = append(names, setConfigCalls(text[m[0]:]).stash...)
	}
	slices.Sort(names)
	return slices.Compact(names)
}

// settingName returns the name of the setting SET or RESET names with the tokens w
// (after SET, SET LOCAL or SET SESSION), lower case, or "" when it cannot tell.
func settingName(w []string) string {
	if len(w) == 0 {
		return ""
	}
	first := strings.ToLower(w[0])
	second := ""
	if len(w) > 1 {
		second = strings.ToLower(w[1])
	}
	switch {
	case first == "time" && second == "zone":
		return "timezone"
	case first == "xml" && second == "option":
		return "xmloption"
	case first == "names":
		return "client_encoding"
	case first == "schema":
		return "search_path"
	case first == "session" && second == "authorization":
		return "session_authorization"
	case first == "transaction" || first == "constraints" || first == "session" || first == "local":
		return ""
	}
	if !isName(w[0]) {
		return ""
	}
	name := strings.ToLower(identName(w[0]))
	for i := 1; i+1 < len(w) && w[i] == "." && isName(w[i+1]); i += 2 {
		name += "." + strings.ToLower(identName(w[i+1]))
	}
	return name
}

// isName reports whether a token is an identifier (a word or a quoted name).
func isName(tok string) bool {
	if tok == "" {
		return false
	}
	c := tok[0]
	return c == '"' || c == '_' || 'a' <= c|0x20 && c|0x20 <= 'z' || c >= 0x80
}

// setConfigCalls reads the set_config calls in a statement: a literal name with a
// literal is_local true is stashed, with false it is a session setting; a name that is
// not a literal, with is_local true, stashes every setting. A call whose is_local is
// not a literal is left alone (README: what tx mode does not do).
func setConfigCalls(text string) localOp {
	var op localOp
	toks := sqllex.Words(text, 1<<20)
	for i := 0; i+1 < len(toks); i++ {
		if !strings.EqualFold(identName(toks[i]), "set_config") || toks[i+1] != "(" {
			continue
		}
		args := callArgs(toks[i+2:])
		if len(args) != 3 || len(args[2]) != 1 {
			continue
		}
		local := sqllex.Unset
		switch strings.ToLower(args[2][0]) {
		case "true", "'t'", "'true'", "'on'":
			local = sqllex.Yes
		case "false", "'f'", "'false'", "'off'":
			local = sqllex.No
		}
		name, ok := "", len(args[0]) == 1
		if ok {
			name, ok = plainString(args[0][0])
		}
		switch {
		case local == sqllex.Yes && ok:
			op.stash = append(op.stash, strings.ToLower(name))
		case local == sqllex.Yes:
			op.stashAll = true
		case local == sqllex.No && ok:
			op.session = append(op.session, strings.ToLower(name))
		}
	}
	return op
}

// callArgs splits the tokens after a call's "(" into its arguments, up to the ")" that
// closes it; nil when it is not closed.
func callArgs(toks []string) [][]string {
	var args [][]string
	var cur []string
	depth := 0
	for _, t := range toks {
		switch {
		case t == "(" || t == "[":
			depth++
		case (t == ")" || t == "]") && depth > 0:
			depth--
		case t == ")":
			return append(args, cur)
		case t == "," && depth == 0:
			args = append(args, cur)
			cur = nil
			continue
		}
		cur = append(cur, t)
	}
	return nil
}

// plainString returns the value of a standard string literal token ('…').
func plainString(tok string) (string, bool) {
	if len(tok) < 2 || tok[0] != '\'' || tok[len(tok)-1] != '\'' {
		return "", false
	}
	return strings.ReplaceAll(tok[1:len(tok)-1], "''", "'"), true
}

// containsFold reports whether s contains the lower-case ASCII word w, ignoring ASCII
// case, without allocating.
func containsFold(s, w string) bool {
	for i := 0; i+len(w) <= len(s); i++ {
		if s[i]|0x20 == w[0] && strings.EqualFold(s[i:i+len(w)], w) {
			return true
		}
	}
	return false
}

// any reports whether the statement touches what ends with the transaction.
func (l localOp) any() bool {
	return len(l.routine) > 0 || len(l.stash) > 0 || l.stashAll || len(l.session) > 0 || l.sessionText != "" || l.constraints != ""
}

// needs reports whether the statement gets statements of the proxy's around it, with
// stashed saying whether the transaction may have a stash.
func (l localOp) needs(stashed bool) bool {
	return len(l.routine) > 0 || len(l.stash) > 0 || l.stashAll || l.constraints != "" || stashed && len(l.sessionNames()) > 0
}

// settingList is names as an SQL text[] value.
func settingList(names []string) string {
	quoted := make([]string, len(names))
	for i, n := range names {
		quoted[i] = quoteLiteral(n)
	}
	return "ARRAY[" + strings.Join(quoted, ", ") + "]::pg_catalog.text[]"
}

// stashSQL adds the current values of names (of every setting, with all) that the
// stash does not hold yet.
func stashSQL(names []string, all bool) string {
	src := "pg_catalog.unnest(" + settingList(names) + ") n(n)"
	if all {
		src = "(SELECT name FROM pg_catalog.pg_settings) n(n)"
	}
	return "SELECT pg_catalog.set_config('" + spLocal + "', (v.s OPERATOR(pg_catalog.||) COALESCE((SELECT " +
		"pg_catalog.jsonb_object_agg(n.n, pg_catalog.current_setting(n.n, true)) FROM " + src +
		" WHERE NOT v.s OPERATOR(pg_catalog.?) n.n), '{}'))::pg_catalog.text, false) FROM (SELECT " + stashValue + ") v(s)"
}

// sessionSQL updates the stash of names, where it holds them, to their current values.
func sessionSQL(names []string) string {
	return "SELECT pg_catalog.set_config('" + spLocal + "', (v.s OPERATOR(pg_catalog.||) (SELECT " +
		"pg_catalog.jsonb_object_agg(n.n, pg_catalog.current_setting(n.n, true)) FROM pg_catalog.unnest(" +
		settingList(names) + ") n(n) WHERE v.s OPERATOR(pg_catalog.?) n.n))::pg_catalog.text, false) FROM (SELECT " +
		stashValue + ") v(s) WHERE v.s OPERATOR(pg_catalog.?|) " + settingList(names)
}

// setConstraintsSQL is SET CONSTRAINTS ALL mode as SET CONSTRAINTS of every deferrable
// constraint by name.
func setConstraintsSQL(mode string) string {
	return `DO $pgtestproxy$DECLARE l text; BEGIN ` +
		`SELECT pg_catalog.string_agg(pg_catalog.format('%I.%I', n.nspname, c.conname), ', ') ` +
		`INTO l FROM pg_catalog.pg_constraint c JOIN pg_catalog.pg_namespace n ON n.oid = c.connamespace ` +
		`WHERE c.condeferrable AND NOT pg_catalog.pg_is_other_temp_schema(n.oid); ` +
		`IF l IS NOT NULL THEN EXECUTE 'SET CONSTRAINTS ' || l || ' ` + mode + `'; END IF; END$pgtestproxy$`
}

// restorePart is the restore of the stash where the transaction commits.
func restorePart(fail effect) planStmt {
	return planStmt{sql: sqlRestoreLocals, role: rolePart, fail: fail}
}

// clientPart stands for the client's statement, as written, in a plan.
func clientPart(p planStmt) bool { return p.role == roleClient && p.sql == "" }

// withLocals adds to plan, the server statements for t (nil: t as written), what keeps
// settings local to the client's transaction: the stash before a statement that may set
// some locally, its update after a session-level SET, SET CONSTRAINTS ALL by name, and
// the restore before the RELEASE that commits the transaction.
func (c *txClient) withLocals(t txStmt, plan []planStmt) []planStmt {
	l := t.local
	if plan == nil && l.needs(c.stashed) {
		if l.constraints != "" {
			return []planStmt{{sql: setConstraintsSQL(l.constraints), role: roleCarrier, tag: "SET CONSTRAINTS", check: true}}
		}
		if len(l.stash) > 0 || l.stashAll {
			plan = append(plan, planStmt{sql: stashSQL(l.stash, l.stashAll), role: rolePart})
			c.stashed = true
		}
		plan = append(plan, planStmt{role: roleClient})
		if names := l.sessionNames(); len(names) > 0 && c.stashed {
			plan = append(plan, planStmt{sql: sessionSQL(names), role: rolePart})
		}
		if len(l.routine) > 0 {
			// Stashed before the routine can run, in this transaction and, from the
			// next unit on, in every one.
			plan = append(plan, planStmt{sql: stashSQL(l.routine, false), role: rolePart})
			c.stashed = true
			c.cn.be.noteRoutineLocals(l.routine)
		}
		return plan
	}
	if !c.stashed {
		return plan
	}
	for i, ps := range plan {
		switch ps.sql {
		case sqlRelease:
			plan = append(plan[:i:i], append([]planStmt{restorePart(effAbandon)}, plan[i:]...)...)
			c.stashed = false
			return plan
		case sqlRollbackTo:
			c.stashed = false
			return plan
		}
	}
	return plan
}

// restoreAtEndNeeded reports whether a query string of the one statement t gets
// statements of the proxy's for settings local to the transaction.
func (c *txClient) restoreAtEndNeeded(t txStmt) bool {
	return t.local.needs(c.stashed) || c.stashed && !c.st.block && !c.skipMode
}

// restoreAtEnd returns the restore of the stash at the end of an autocommit unit or a
// query string's implicit block, if the unit may have stashed anything.
func (c *txClient) restoreAtEnd() (planStmt, bool) {
	if !c.stashed {
		return planStmt{}, false
	}
	c.stashed = false
	return restorePart(effNone), true
}

// around adds a client statement with the proxy's statements around it (plan holds a
// clientPart): the client's text is kept as written, so that error positions in it
// map one to one.
func (qb *queryBuilder) around(st *sqllex.Statement, plan []planStmt, ch *chanOp) {
	for _, ps := range plan {
		if clientPart(ps) {
			qb.keep(st, true)
			qb.note(ch)
			qb.changed = true
			continue
		}
		qb.replace(st, []planStmt{ps})
	}
}

// noteRoutineLocals adds names to the settings the lease's routines may set locally.
func (b *Backend) noteRoutineLocals(names []string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	all := slices.Concat(b.routineLocals, names)
	slices.Sort(all)
	b.routineLocals = slices.Compact(all)
	b.hasRoutineLocals.Store(true)
}

// unitLocals runs where a unit starts outside a client block: when routines created in
// the lease may set settings locally, the unit's transaction stashes them, so that a
// routine an autocommit statement or the block calls has them set back at its commit.
func (c *txClient) unitLocals(first bool) error {
	if !c.cn.be.hasRoutineLocals.Load() {
		return nil
	}
	c.cn.be.mu.Lock()
	names := c.cn.be.routineLocals
	c.cn.be.mu.Unlock()
	c.stashed = true
	return c.inject(planStmt{sql: stashSQL(names, false), role: rolePart}, first)
}
