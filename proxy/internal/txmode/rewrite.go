package txmode

import (
	"strings"

	"github.com/jackc/pgerrcode"

	"github.com/pgtestproxy/pgtestproxy/internal/sqllex"
)

// The statements the proxy runs on the server. spName is the proxy's savepoint.
const (
	spName        = "pgtestproxy"
	sqlSavepoint  = "SAVEPOINT pgtestproxy"
	sqlRelease    = "RELEASE SAVEPOINT pgtestproxy"
	sqlRollbackTo = "ROLLBACK TO SAVEPOINT pgtestproxy"
	sqlCarrier    = "SELECT" // a statement that does nothing, to carry a client's tag
	// READ ONLY and READ WRITE of the client's block: the proxy's savepoint is a
	// subtransaction, and PostgreSQL lets one become read-only (and restores the outer
	// transaction's mode when it ends, released or rolled back).
	sqlReadOnly  = "SET LOCAL transaction_read_only = on"
	sqlReadWrite = "SET LOCAL transaction_read_only = off"
)

// sqlCheckDeferred does what a plain server's commit does with deferred constraints
// and constraint triggers: it fires what is pending (SET CONSTRAINTS … IMMEDIATE on
// every deferrable constraint, by name), so that what it fired is done for good when
// the savepoint is released, and then sets the initially deferred ones back to
// DEFERRED, which leaves the SET CONSTRAINTS state as a new transaction has it for every
// constraint that exists (a client's SET CONSTRAINTS ALL is not undone for constraints
// created later in the lease). SET CONSTRAINTS ALL would fire the same but leave every
// constraint immediate. Errors it raises are the client's; the proxy cuts its own
// context from them (checkContext).
const sqlCheckDeferred = `DO $pgtestproxy$DECLARE imm text; def text; BEGIN ` +
	`SELECT pg_catalog.string_agg(pg_catalog.format('%I.%I', n.nspname, c.conname), ', '), ` +
	`pg_catalog.string_agg(pg_catalog.format('%I.%I', n.nspname, c.conname), ', ') FILTER (WHERE c.condeferred) ` +
	`INTO imm, def FROM pg_catalog.pg_constraint c JOIN pg_catalog.pg_namespace n ON n.oid = c.connamespace ` +
	`WHERE c.condeferrable AND NOT pg_catalog.pg_is_other_temp_schema(n.oid); ` +
	`IF imm IS NOT NULL THEN EXECUTE 'SET CONSTRAINTS ' || imm || ' IMMEDIATE'; END IF; ` +
	`IF def IS NOT NULL THEN EXECUTE 'SET CONSTRAINTS ' || def || ' DEFERRED'; END IF; END$pgtestproxy$`

// checkContext is where the context of an error or notice of sqlCheckDeferred begins:
// what comes before it is the client's (a constraint trigger's own context).
const checkContext = "SQL statement \"SET CONSTRAINTS "

// sqlHasDeferrable learns, at a backend's first lease, whether the clone has anything
// sqlCheckDeferred would check.
const sqlHasDeferrable = "SELECT EXISTS (SELECT FROM pg_catalog.pg_constraint WHERE condeferrable)"

// Messages and hints of what tx mode refuses or ignores.
const (
	hintModeDB = "tx mode runs the session inside one transaction of the proxy; " +
		"connect with mode=db (options=-c pgtestproxy.mode=db) for this statement."
	hintModes = "tx mode runs the session inside one transaction that the proxy began " +
		"with the server's defaults; connect with mode=db to use other transaction modes."
	msgReserved = `savepoint names beginning with "pgtestproxy" are reserved in tx mode`
)

// role says what happens to the replies of a message the proxy sent to the server.
type role uint8

const (
	// roleClient: the client's own message; its replies are the client's.
	roleClient role = iota
	// rolePart: part of the proxy's rewrite of a client statement; its replies are
	// swallowed but its errors and notices are the client statement's.
	rolePart
	// roleCarrier: the part that completes the client's statement: as rolePart, and
	// its CommandComplete reaches the client with the client statement's tag.
	roleCarrier
	// roleInfra: the proxy's own bookkeeping; its replies are swallowed and an error
	// ends the session, because the proxy no longer knows where its transaction stands.
	roleInfra
)

// planStmt is one server statement of the proxy's rewrite of a client statement.
type planStmt struct {
	sql      string // empty for the client's statement, sent as written
	role     role
	tag      string  // roleCarrier: the client statement's command tag
	ok, fail effect  // applied to the txState when the statement completes or fails
	raise    bool    // a DO block raising a message the proxy emulates
	check    bool    // sqlCheckDeferred: the proxy cuts its context from what it raises
	probe    bool    // sqlHasDeferrable: its row says whether to check deferred constraints
	quiet    bool    // its notices are the proxy's (oncommit.go)
	idle     bool    // sqlIdleGuard: its row is the client's timeout (idle.go)
	path     bool    // sqlPathRead: its row is the session's search_path (ownpath.go)
	ch       *chanOp // the client's LISTEN, UNLISTEN or NOTIFY, run as written (notify.go)
}

// checkPart is the check of deferred constraints at the end of the client's block or
// autocommit unit; its errors end the block or unit, as a plain server's commit does.
func checkPart(fail effect) planStmt {
	return planStmt{sql: sqlCheckDeferred, role: rolePart, fail: fail, check: true}
}

// txStmt is what tx mode keeps of a client statement, for rewriting it now or when a
// prepared statement is executed later.
type txStmt struct {
	idle     bool   // it may set idle_in_transaction_session_timeout (idle.go)
	path     bool   // it may set search_path (ownpath.go)
	dealloc  string // DEALLOCATE's statement name, deallocAll for ALL (deallocate.go)
	kind     sqllex.Kind
	tag      string
	chain    bool
	modes    string          // the transaction modes tx mode does not apply (all but READ ONLY/WRITE)
	ro       sqllex.Tristate // READ ONLY (Yes) or READ WRITE (No)
	reserved bool            // a savepoint name of the proxy's
	ignore   bool            // SET SESSION CHARACTERISTICS or SET TRANSACTION SNAPSHOT: passed on
	copy     bool            // COPY: executing it may start copy-in mode
	ddl      bool            // CREATE, ALTER or DROP: it may create or drop a deferrable constraint
	inBlock  blockOnly       // a statement a plain server runs only in a transaction block
	cursor   string          // DECLARE without HOLD: the name of a cursor that ends with the transaction
	noTxCmd  string          // sqllex's NoTxCommand
	ch       *chanOp         // LISTEN, UNLISTEN or NOTIFY, which the proxy carries out (notify.go)
	local    localOp         // what it does to settings local to the transaction (locals.go)
	txModes  sqllex.TxModes  // all its transaction modes (isolation.go)
	temp     tempTable       // CREATE of a temporary table, whose ON COMMIT the proxy carries out (oncommit.go)
	hold     *holdCursor     // DECLARE … WITH HOLD, materialised at the client's commit (hold.go)

	// notifyAt: a pg_notify call whose arguments its Bind gives (pgnotify.go).
	notifyAt *sqllex.PgNotifyCall
}

// blockOnly names a statement that a plain server refuses (or ignores, with a
// warning) outside a transaction block; inside tx mode's one transaction the server
// would take it, so the proxy says what a plain server says.
type blockOnly uint8

const (
	anywhere blockOnly = iota
	blockDeclare
	blockLock
	blockSetLocal
	blockSetConstraints
)

// classifyBlockOnly reads the leading words of a statement whose first word is kw;
// for DECLARE without HOLD it also returns the cursor's name.
func classifyBlockOnly(kw, text string) (blockOnly, string) {
	switch kw {
	case "declare":
		w := sqllex.Words(text, 12)
		if len(w) < 2 {
			return anywhere, ""
		}
		for i := 2; i < len(w) && !strings.EqualFold(w[i], "for"); i++ {
			if strings.EqualFold(w[i], "hold") && strings.EqualFold(w[i-1], "with") {
				return anywhere, ""
			}
		}
		return blockDeclare, identName(w[1])
	case "lock":
		return blockLock, ""
	case "set":
		w := sqllex.Words(text, 2)
		switch {
		case len(w) == 2 && strings.EqualFold(w[1], "local"):
			return blockSetLocal, ""
		case len(w) == 2 && strings.EqualFold(w[1], "constraints"):
			return blockSetConstraints, ""
		}
	}
	return anywhere, ""
}

// identName returns the name an identifier token stands for: a quoted one unquoted,
// an unquoted one folded to lower case (ASCII, as PostgreSQL folds it).
func identName(tok string) string {
	if len(tok) >= 2 && tok[0] == '"' && tok[len(tok)-1] == '"' {
		return strings.ReplaceAll(tok[1:len(tok)-1], `""`, `"`)
	}
	b := []byte(tok)
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b)
}

// closeCursors closes the client's cursors without HOLD that are still open, as a
// plain server's commit does (a rollback to the proxy's savepoint drops them itself).
// It returns nothing when there are none to close.
func closeCursors(names []string) []planStmt {
	var list []string
	for _, n := range names {
		if !strings.Contains(n, "$pgtestproxy$") {
			list = append(list, quoteLiteral(n))
		}
	}
	if len(list) == 0 {
		return nil
	}
	sql := "DO $pgtestproxy$DECLARE r record; BEGIN FOR r IN SELECT name FROM pg_catalog.pg_cursors " +
		"WHERE NOT is_holdable AND name = ANY (ARRAY[" + strings.Join(list, ", ") + "]) " +
		"LOOP EXECUTE 'CLOSE ' || pg_catalog.quote_ident(r.name); END LOOP; END$pgtestproxy$"
	return []planStmt{{sql: sql, role: rolePart, fail: effAbandon}}
}

// outsideBlock is what a plain server says for a statement t.inBlock names, run
// outside a transaction block: an error, or a warning and nothing done.
func outsideBlock(t txStmt) []planStmt {
	switch t.inBlock {
	case blockDeclare:
		return carrierOnly(t.tag, raiseError(pgerrcode.NoActiveSQLTransaction, "DECLARE CURSOR can only be used in transaction blocks", ""))
	case blockLock:
		return carrierOnly(t.tag, raiseError(pgerrcode.NoActiveSQLTransaction, "LOCK TABLE can only be used in transaction blocks", ""))
	case blockSetLocal:
		return carrierOnly("SET", raiseWarning(pgerrcode.NoActiveSQLTransaction, "SET LOCAL can only be used in transaction blocks"))
	case blockSetConstraints:
		return carrierOnly("SET CONSTRAINTS", raiseWarning(pgerrcode.NoActiveSQLTransaction, "SET CONSTRAINTS can only be used in transaction blocks"))
	}
	return nil
}

func newTxStmt(st *sqllex.Statement) txStmt {
	kw := ""
	if st.Kind == sqllex.Other {
		kw = strings.ToLower(sqllex.Keyword(st.Text))
	}
	others := st.Modes
	others.ReadOnly = sqllex.Unset
	inBlock, cursor := classifyBlockOnly(kw, st.Text)
	local := classifyLocal(kw, st.Text)
	return txStmt{
		idle:     mentionsIdle(kw, st.Text, local),
		path:     mentionsPath(kw, st.Text),
		dealloc:  deallocName(kw, st.Text),
		inBlock:  inBlock,
		cursor:   cursor,
		local:    local,
		txModes:  st.Modes,
		noTxCmd:  st.NoTxCommand,
		ch:       newChanOp(st),
		notifyAt: pgNotifyParams(st),
		temp:     onCommitTable(kw, st.Text),
		hold:     holdDeclare(kw, st.Text),
		kind:     st.Kind,
		tag:      st.Tag,
		chain:    st.Chain,
		modes:    others.String(),
		ro:       st.Modes.ReadOnly,
		reserved: strings.HasPrefix(st.Name.Name, spName),
		ignore:   st.Kind == sqllex.SetTransaction && (st.Session || st.Literal != ""),
		copy:     kw == "copy",
		ddl:      kw == "create" || kw == "alter" || kw == "drop",
	}
}

// noTx reports whether the server refuses st inside a transaction block, so its
// error gets the mode=db hint.
func (t txStmt) noTx() bool {
	return t.kind == sqllex.NoTxBlock || t.kind == sqllex.CommitPrepared || t.kind == sqllex.RollbackPrepared
}

// control reports whether st is transaction control that tx mode rewrites in some
// state; every other statement reaches the server as written.
func (t txStmt) control() bool {
	switch t.kind {
	case sqllex.Begin, sqllex.Commit, sqllex.Rollback, sqllex.Savepoint, sqllex.Release,
		sqllex.RollbackTo, sqllex.PrepareTransaction:
		return true
	case sqllex.SetTransaction:
		return !t.ignore
	}
	return t.inBlock != anywhere
}

// ends reports whether st may end the client's block: the next unit must then wait
// for its outcome.
func (t txStmt) ends() bool {
	return t.kind == sqllex.Begin || t.kind == sqllex.Commit || t.kind == sqllex.Rollback
}

// where says what a rewrite depends on besides the txState.
type where struct {
	failed   bool     // the client's block has failed
	last     bool     // no statement follows in the unit; a COMMIT then leaves the next savepoint to the next unit
	deferred bool     // the lease may have deferrable constraints to check
	implicit bool     // the statement is one of several of a query string: a plain server's implicit block
	cursors  []string // the client's cursors without HOLD declared in the block

	// atCommit is what a commit does with the session's temporary tables (oncommit.go).
	atCommit []planStmt
}

// rewrite returns the server statements that stand for st in state s, or nil when st
// reaches the server as written.
func rewrite(t txStmt, s txState, w where) []planStmt {
	if t.inBlock != anywhere {
		if s.block || w.implicit {
			return nil
		}
		return outsideBlock(t)
	}
	switch t.kind {
	case sqllex.Begin:
		return rewriteBegin(t, s)
	case sqllex.Commit:
		if s.block {
			return rewriteCommit(t, s, w)
		}
		if t.chain {
			return carrierOnly(t.tag, raiseError(pgerrcode.NoActiveSQLTransaction, "COMMIT AND CHAIN can only be used in transaction blocks", ""))
		}
		if w.last {
			return carrierOnly(t.tag, raiseWarning(pgerrcode.NoActiveSQLTransaction, "there is no transaction in progress"))
		}
		// As a plain server does in an implicit transaction: warn, and commit what the
		// unit did so far.
		plan := append([]planStmt{warnPart(raiseWarning(pgerrcode.NoActiveSQLTransaction, "there is no transaction in progress"))}, w.atCommit...)
		return append(plan, planStmt{sql: sqlRelease, role: roleCarrier, tag: t.tag, ok: effReleased},
			planStmt{sql: sqlSavepoint, role: roleInfra, ok: effSavepoint})
	case sqllex.Rollback:
		return rewriteRollback(t, s)
	case sqllex.Savepoint, sqllex.Release, sqllex.RollbackTo:
		return rewriteSavepoint(t, s)
	case sqllex.PrepareTransaction:
		refuse := carrierOnly(t.tag, raiseError(pgerrcode.FeatureNotSupported, "PREPARE TRANSACTION is not supported in tx mode", hintModeDB))
		if s.block {
			// A plain server ends the transaction at PREPARE TRANSACTION, even when it
			// refuses it: the client's block is rolled back, then refused.
			return append([]planStmt{{sql: sqlRollbackTo, role: rolePart, ok: effEnded}}, refuse...)
		}
		return refuse
	case sqllex.SetTransaction:
		return rewriteSetTransaction(t, s, w)
	}
	return nil
}

// rewriteSetTransaction applies READ ONLY and READ WRITE to the client's block (or to
// the rest of a query string's implicit block), and says the other modes are not
// applied.
func rewriteSetTransaction(t txStmt, s txState, w where) []planStmt {
	switch {
	case t.ignore:
		return nil
	case !s.block && !w.implicit:
		return carrierOnly(t.tag, raiseWarning(pgerrcode.NoActiveSQLTransaction, "SET TRANSACTION can only be used in transaction blocks"))
	}
	var plan []planStmt
	switch t.ro {
	case sqllex.Yes:
		plan = append(plan, planStmt{sql: sqlReadOnly, role: roleCarrier, tag: t.tag, ok: effReadOnly})
	case sqllex.No:
		plan = append(plan, planStmt{sql: sqlReadWrite, role: roleCarrier, tag: t.tag, ok: effReadWrite})
	}
	if t.modes != "" || len(plan) == 0 {
		plan = append(plan, planStmt{sql: raiseNotice("tx mode does not apply transaction modes: "+t.modes, hintModes),
			role: roleCarrier, tag: t.tag, raise: true})
	}
	if len(plan) == 2 {
		plan[0].role = rolePart
	}
	if !s.block {
		// In an implicit block the modes end with the query string; the state outside
		// a client block never holds them.
		for i := range plan {
			plan[i].ok = effNone
		}
	}
	return plan
}

func rewriteBegin(t txStmt, s txState) []planStmt {
	if s.block {
		return carrierOnly(t.tag, raiseWarning(pgerrcode.ActiveSQLTransaction, "there is already a transaction in progress"))
	}
	sql := sqlCarrier
	raise := false
	if t.modes != "" {
		sql, raise = raiseNotice("tx mode does not apply transaction modes: "+t.modes, hintModes), true
	}
	plan := []planStmt{{sql: sql, role: roleCarrier, tag: t.tag, ok: effBegin, raise: raise}}
	if t.ro == sqllex.Yes {
		plan = append(plan, planStmt{sql: sqlReadOnly, role: rolePart, ok: effReadOnly})
	}
	return plan
}

// keepReadOnly is what a chained block (COMMIT or ROLLBACK AND CHAIN) needs to keep
// the READ ONLY of the block before, as a plain server's chained transaction does.
func keepReadOnly(s txState) []planStmt {
	if !s.ro {
		return nil
	}
	return []planStmt{{sql: sqlReadOnly, role: rolePart, ok: effReadOnly}}
}

// rewriteCommit ends the client's block: a failed block is rolled back (tagged
// ROLLBACK, as a plain server does); a good one has its deferred constraints checked
// (sqlCheckDeferred) and is released.
func rewriteCommit(t txStmt, s txState, w where) []planStmt {
	if w.failed {
		if t.chain {
			return append([]planStmt{{sql: sqlRollbackTo, role: roleCarrier, tag: "ROLLBACK", ok: effChained}}, keepReadOnly(s)...)
		}
		return []planStmt{{sql: sqlRollbackTo, role: roleCarrier, tag: "ROLLBACK", ok: effEnded}}
	}
	var plan []planStmt
	if w.deferred {
		plan = append(plan, checkPart(effAbandon))
	}
	plan = append(plan, closeCursors(w.cursors)...)
	plan = append(plan, w.atCommit...)
	if t.chain {
		plan = append(plan, planStmt{sql: sqlRelease, role: rolePart, ok: effReleased, fail: effAbandon},
			planStmt{sql: sqlSavepoint, role: roleCarrier, tag: t.tag, ok: effChained})
		return append(plan, keepReadOnly(s)...)
	}
	plan = append(plan, planStmt{sql: sqlRelease, role: roleCarrier, tag: t.tag, ok: effReleased, fail: effAbandon})
	if !w.last {
		plan = append(plan, planStmt{sql: sqlSavepoint, role: roleInfra, ok: effSavepoint})
	}
	return plan
}

func rewriteRollback(t txStmt, s txState) []planStmt {
	switch {
	case s.block && t.chain:
		return append([]planStmt{{sql: sqlRollbackTo, role: roleCarrier, tag: t.tag, ok: effChained}}, keepReadOnly(s)...)
	case s.block:
		return []planStmt{{sql: sqlRollbackTo, role: roleCarrier, tag: t.tag, ok: effEnded}}
	case t.chain:
		return carrierOnly(t.tag, raiseError(pgerrcode.NoActiveSQLTransaction, "ROLLBACK AND CHAIN can only be used in transaction blocks", ""))
	}
	// As a plain server does in an implicit transaction: warn, and undo what the
	// unit did so far.
	return []planStmt{warnPart(raiseWarning(pgerrcode.NoActiveSQLTransaction, "there is no transaction in progress")),
		{sql: sqlRollbackTo, role: roleCarrier, tag: t.tag, ok: effSavepoint}}
}

func rewriteSavepoint(t txStmt, s txState) []planStmt {
	if !s.block {
		what := map[sqllex.Kind]string{sqllex.Savepoint: "SAVEPOINT", sqllex.Release: "RELEASE SAVEPOINT",
			sqllex.RollbackTo: "ROLLBACK TO SAVEPOINT"}[t.kind]
		return carrierOnly(t.tag, raiseError(pgerrcode.NoActiveSQLTransaction, what+" can only be used in transaction blocks", ""))
	}
	if t.reserved {
		return carrierOnly(t.tag, raiseError(pgerrcode.ReservedName, msgReserved, ""))
	}
	return nil
}

func carrierOnly(tag, sql string) []planStmt {
	return []planStmt{{sql: sql, role: roleCarrier, tag: tag, raise: true}}
}

// warnPart is a warning the proxy raises as part of a rewrite.
func warnPart(sql string) planStmt { return planStmt{sql: sql, role: rolePart, raise: true} }

// The proxy emulates PostgreSQL's warnings and errors for transaction control with
// PL/pgSQL RAISE in a DO block, so that the server orders them and skips them after
// an error exactly as it would its own. The proxy drops the PL/pgSQL context from
// what they raise.
func raiseWarning(code, msg string) string { return raise("WARNING", code, msg, "") }
func raiseError(code, msg, hint string) string {
	return raise("EXCEPTION", code, msg, hint)
}
func raiseNotice(msg, hint string) string { return raise("NOTICE", "", msg, hint) }

func raise(level, code, msg, hint string) string {
	var b strings.Builder
	b.WriteString("DO $pgtestproxy$BEGIN RAISE ")
	b.WriteString(level)
	b.WriteString(" USING MESSAGE = ")
	b.WriteString(quoteLiteral(msg))
	if code != "" {
		b.WriteString(", ERRCODE = ")
		b.WriteString(quoteLiteral(code))
	}
	if hint != "" {
		b.WriteString(", HINT = ")
		b.WriteString(quoteLiteral(hint))
	}
	b.WriteString("; END$pgtestproxy$")
	return b.String()
}

// quoteLiteral quotes s as a standard SQL string literal. The texts it quotes are the
// proxy's own and never hold "$pgtestproxy$".
func quoteLiteral(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }
