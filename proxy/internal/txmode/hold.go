package txmode

import (
	"strings"

	"github.com/pgtestproxy/pgtestproxy/internal/sqllex"
)

// Cursors WITH HOLD. A plain server's commit runs a holdable cursor's query to its end
// and keeps the rows (its errors and side effects come at COMMIT; after it the cursor
// reads no table), but only at the commit of its top-level transaction, which in tx
// mode never comes: left alone, the cursor would go on running its query in the
// proxy's transaction, as it is fetched. So where a plain server commits (the client's
// COMMIT, the end of an autocommit unit), after the deferred check and before the
// on-commit actions of temporary tables, as PostgreSQL orders them, one DO block
// materialises the holdable cursors the client declared since its last commit: it
// creates a temporary table of the cursor's query's columns (CREATE TABLE … AS the
// query WITH NO DATA, which runs nothing), fetches every row of the cursor into it
// (from its start for a scrollable cursor, whose position it notes and restores;
// from its position for one that cannot scroll back), closes it, and declares it
// again, WITH HOLD and with its BINARY and SCROLL options, over the table. A failure
// of the cursor's query fails the commit, as on a plain server. A cursor whose table
// cannot be made (a READ ONLY block, columns of the same name or of type record, a
// query with parameters) is left as it is. The tables are named pgtestproxy_hold_N,
// in the lease's temporary schema; one that no open cursor reads any more is dropped
// at the next materialisation, and the rest at the lease's end.

// holdCursor is a client's DECLARE … WITH HOLD: the cursor's name, as the server folds
// it, and its query as written.
type holdCursor struct {
	name, query string
}

// holdDeclare reads DECLARE name [BINARY] [ASENSITIVE | INSENSITIVE] [[NO] SCROLL]
// CURSOR WITH HOLD FOR query, whose first word is kw; nil for any other statement.
func holdDeclare(kw, text string) *holdCursor {
	if kw != "declare" {
		return nil
	}
	toks := sqllex.Tokens(text, 12)
	hold := false
	for i := 2; i < len(toks); i++ {
		switch {
		case is(toks[i].Text, "hold") && is(toks[i-1].Text, "with"):
			hold = true
		case is(toks[i].Text, "for"):
			if !hold {
				return nil
			}
			q := strings.TrimSpace(text[toks[i].End:])
			if q == "" || strings.Contains(q, holdQuote) || strings.Contains(q, "$pgtestproxy$") {
				return nil
			}
			return &holdCursor{name: identName(toks[1].Text), query: q}
		}
	}
	return nil
}

// holdQuote dollar-quotes a cursor's query in the DO block, whatever the session's
// standard_conforming_strings.
const holdQuote = "$pgtestproxy_q$"

// noteHold records a client's DECLARE … WITH HOLD, to be materialised at the next
// commit. A name declared again (after a CLOSE, or noted twice for one statement)
// keeps its last query: the one its open cursor runs.
func (c *txClient) noteHold(t txStmt) {
	if t.hold == nil || strings.Contains(t.hold.name, "$pgtestproxy$") {
		return
	}
	for i := range c.holds {
		if c.holds[i].name == t.hold.name {
			c.holds[i] = *t.hold
			return
		}
	}
	c.holds = append(c.holds, *t.hold)
}

// holdsAtCommit returns the statement that materialises the cursors c.holds names
// (nothing when there are none), with fail its effect when it fails: the cursor's
// query failed, and so does the commit.
func (c *txClient) holdsAtCommit(fail effect) []planStmt {
	if len(c.holds) == 0 {
		return nil
	}
	var vals []string
	for _, h := range c.holds {
		vals = append(vals, "("+quoteLiteral(h.name)+", "+holdQuote+h.query+holdQuote+")")
	}
	sql := "DO $pgtestproxy$DECLARE r record; rec record; cur refcursor; t text; i int; pos bigint; onrow bool; BEGIN " +
		"FOR r IN SELECT c.name, c.is_binary, c.is_scrollable, h.q FROM pg_catalog.pg_cursors c " +
		"JOIN (VALUES " + strings.Join(vals, ", ") + ") h (n, q) ON c.name = h.n " +
		"WHERE c.is_holdable AND c.statement OPERATOR(pg_catalog.!~) ' FROM pg_temp[.]pgtestproxy_hold_[0-9]+$' LOOP " +
		"i := 0; LOOP t := 'pgtestproxy_hold_' || i; " +
		"EXIT WHEN pg_catalog.to_regclass(pg_catalog.format('pg_temp.%I', t)) IS NULL; i := i + 1; END LOOP; " +
		"BEGIN EXECUTE pg_catalog.format(E'CREATE TEMP TABLE %I AS %s\\nWITH NO DATA', t, r.q); " +
		"EXCEPTION WHEN OTHERS THEN CONTINUE; END; " +
		"cur := r.name; pos := 0; " +
		"IF r.is_scrollable THEN FETCH RELATIVE 0 FROM cur INTO rec; onrow := FOUND; " +
		"MOVE BACKWARD ALL FROM cur; GET DIAGNOSTICS pos = ROW_COUNT; " +
		"IF onrow OR pos > 0 THEN pos := pos + 1; END IF; END IF; " +
		"EXECUTE pg_catalog.format('DO $h$DECLARE cur refcursor := %L; rec pg_temp.%I; BEGIN LOOP FETCH cur INTO rec; " +
		"EXIT WHEN NOT FOUND; INSERT INTO pg_temp.%I SELECT rec.*; END LOOP; END$h$', r.name, t, t); " +
		"CLOSE cur; " +
		"EXECUTE pg_catalog.format('DECLARE %I %s %s CURSOR WITH HOLD FOR SELECT * FROM pg_temp.%I', r.name, " +
		"CASE WHEN r.is_binary THEN 'BINARY' ELSE '' END, CASE WHEN r.is_scrollable THEN 'SCROLL' ELSE 'NO SCROLL' END, t); " +
		"IF pos > 0 THEN EXECUTE pg_catalog.format('MOVE ABSOLUTE %s FROM %I', pos, r.name); END IF; " +
		"END LOOP; " +
		"IF NOT pg_catalog.current_setting('transaction_read_only')::bool THEN " +
		"FOR t IN SELECT k.relname FROM pg_catalog.pg_class k WHERE k.relnamespace = pg_catalog.pg_my_temp_schema() " +
		"AND pg_catalog.starts_with(k.relname, 'pgtestproxy_hold_') AND NOT EXISTS (SELECT FROM pg_catalog.pg_cursors " +
		"WHERE pg_catalog.right(statement, pg_catalog.length(pg_catalog.format('pg_temp.%I', k.relname))) = pg_catalog.format('pg_temp.%I', k.relname)) " +
		"LOOP EXECUTE pg_catalog.format('DROP TABLE pg_temp.%I', t); END LOOP; END IF; " +
		"END$pgtestproxy$"
	return []planStmt{{sql: sql, role: rolePart, fail: fail, raise: true}}
}
