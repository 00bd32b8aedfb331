package txmode

import (
	"maps"
	"sort"
	"strings"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/pgtestproxy/pgtestproxy/internal/sqllex"
)

// Temporary tables created ON COMMIT DELETE ROWS or ON COMMIT DROP. PostgreSQL keeps a
// table's on-commit action in the backend's memory only (the catalog does not have
// it) and carries it out at the commit of the top-level transaction, which in tx mode
// never comes. So the proxy reads the action from the client's CREATE statements
// (onCommitTable) and does at the client's commits what the server's commit would do
// (tempTables.atCommit): at its COMMIT, and at the end of each autocommit unit, one DO
// block truncates the session's tables with DELETE ROWS (deletes their rows in a READ
// ONLY block, which may not TRUNCATE) and drops, quietly and with what depends on
// them, those with DROP, which are all created in the transaction that commits.

// onCommit is the on-commit action a CREATE statement gives a temporary table.
type onCommit uint8

const (
	ocNone       onCommit = iota // not a CREATE of a temporary table
	ocPreserve                   // ON COMMIT PRESERVE ROWS, the default
	ocDeleteRows                 // ON COMMIT DELETE ROWS
	ocDrop                       // ON COMMIT DROP
)

// tempTable is what a client's statement says of a temporary table it creates.
type tempTable struct {
	name        string // as the server folds it
	act         onCommit
	ifNotExists bool // CREATE … IF NOT EXISTS: the server may skip it
}

// onCommitTable reads CREATE [GLOBAL|LOCAL] TEMP[ORARY] TABLE [IF NOT EXISTS] name …
// [ON COMMIT …] (also CREATE TABLE pg_temp.name, and CREATE TABLE … AS), whose first
// word is kw.
func onCommitTable(kw, text string) tempTable {
	if kw != "create" {
		return tempTable{}
	}
	w := sqllex.Words(text, 10)
	i, temp := 1, false
	if i < len(w) && (is(w[i], "global") || is(w[i], "local")) {
		i++
	}
	if i < len(w) && (is(w[i], "temp") || is(w[i], "temporary")) {
		temp = true
		i++
	}
	if i >= len(w) || !is(w[i], "table") {
		return tempTable{}
	}
	i++
	t := tempTable{act: ocPreserve}
	if i+2 < len(w) && is(w[i], "if") && is(w[i+1], "not") && is(w[i+2], "exists") {
		t.ifNotExists = true
		i += 3
	}
	if i >= len(w) {
		return tempTable{}
	}
	t.name = identName(w[i])
	if i+2 < len(w) && w[i+1] == "." {
		temp = temp || t.name == "pg_temp"
		t.name = identName(w[i+2])
	}
	if !temp {
		return tempTable{}
	}
	// The ON COMMIT clause comes after the columns and options, outside parentheses,
	// and before the AS of CREATE TABLE … AS.
	w = sqllex.Words(text, 1<<16)
	depth := 0
	for j := i; j < len(w); j++ {
		switch {
		case w[j] == "(":
			depth++
		case w[j] == ")":
			depth--
		case depth != 0:
		case is(w[j], "as"):
			return t
		case is(w[j], "on") && j+2 < len(w) && is(w[j+1], "commit"):
			switch {
			case is(w[j+2], "delete"):
				t.act = ocDeleteRows
			case is(w[j+2], "drop"):
				t.act = ocDrop
			}
			return t
		}
	}
	return t
}

func is(word, kw string) bool { return strings.EqualFold(word, kw) }

// tempTables are a session's temporary tables with an on-commit action, as its
// CREATE statements left them: the last CREATE of a name says what the table of that
// name does at commit.
type tempTables struct {
	acts map[string]onCommit // ocDeleteRows or ocDrop, by name
	// saved is acts as the client's block found it, kept once a CREATE in the block
	// changed it, for the block's rollback to restore; nil: unchanged.
	saved map[string]onCommit
}

// note records a CREATE of a temporary table; block says it runs in the client's
// transaction block.
func (tt *tempTables) note(t tempTable, block bool) {
	if t.act == ocNone || strings.Contains(t.name, "$pgtestproxy$") {
		return
	}
	_, had := tt.acts[t.name]
	if t.act == ocPreserve && (!had || t.ifNotExists) {
		return // nothing to forget, or the server skips the CREATE if the table exists
	}
	if block && tt.saved == nil {
		tt.saved = maps.Clone(tt.acts)
		if tt.saved == nil {
			tt.saved = map[string]onCommit{}
		}
	}
	if t.act == ocPreserve {
		delete(tt.acts, t.name)
		return
	}
	if tt.acts == nil {
		tt.acts = map[string]onCommit{}
	}
	tt.acts[t.name] = t.act
}

// any reports whether a commit has something to do.
func (tt *tempTables) any() bool { return len(tt.acts) > 0 }

// atCommit returns the statement that does what a plain server's commit does with the
// session's temporary tables (nothing when there are none), with fail its effect when
// it fails. Tables that no longer exist (dropped, or rolled back) are left out on the
// server.
func (tt *tempTables) atCommit(fail effect) []planStmt {
	if len(tt.acts) == 0 {
		return nil
	}
	var del, drop []string
	for name, act := range tt.acts {
		if act == ocDrop {
			drop = append(drop, quoteLiteral(name))
		} else {
			del = append(del, quoteLiteral(name))
		}
	}
	sort.Strings(del)
	sort.Strings(drop)
	d, r := textArray(del), textArray(drop)
	sql := "DO $pgtestproxy$DECLARE del text[]; dr text[]; t text; BEGIN " +
		"SELECT pg_catalog.array_agg(pg_catalog.format('pg_temp.%I', c.relname)) FILTER (WHERE c.relname = ANY (" + d + ")), " +
		"pg_catalog.array_agg(pg_catalog.format('pg_temp.%I', c.relname)) FILTER (WHERE c.relname = ANY (" + r + ")) " +
		"INTO del, dr FROM pg_catalog.pg_class c WHERE c.relnamespace = pg_catalog.pg_my_temp_schema() " +
		"AND c.relkind IN ('r', 'p') AND (c.relname = ANY (" + d + ") OR c.relname = ANY (" + r + ")); " +
		"IF del IS NOT NULL AND pg_catalog.current_setting('transaction_read_only')::bool THEN " +
		"FOREACH t IN ARRAY del LOOP EXECUTE 'DELETE FROM ' || t; END LOOP; " +
		"ELSIF del IS NOT NULL THEN EXECUTE 'TRUNCATE ' || pg_catalog.array_to_string(del, ', '); END IF; " +
		"IF dr IS NOT NULL THEN EXECUTE 'DROP TABLE ' || pg_catalog.array_to_string(dr, ', ') || ' CASCADE'; END IF; " +
		"END$pgtestproxy$"
	return []planStmt{{sql: sql, role: rolePart, fail: fail, raise: true, quiet: true}}
}

func textArray(quoted []string) string {
	return "ARRAY[" + strings.Join(quoted, ", ") + "]::pg_catalog.text[]"
}

// committed records that the transaction committed: the tables with ON COMMIT DROP
// are gone.
func (tt *tempTables) committed() {
	tt.saved = nil
	maps.DeleteFunc(tt.acts, func(_ string, act onCommit) bool { return act == ocDrop })
}

// rolledBack records that the client's block (or what a query string did before its
// ROLLBACK) was rolled back: the tables it created are gone, and those it replaced are
// back.
func (tt *tempTables) rolledBack() {
	if tt.saved != nil {
		tt.acts, tt.saved = tt.saved, nil
	}
	maps.DeleteFunc(tt.acts, func(_ string, act onCommit) bool { return act == ocDrop })
}

// noteTemp records a client's CREATE of a temporary table in the predicted state.
func (c *txClient) noteTemp(t txStmt) { c.temps.note(t.temp, c.st.block) }

// commitsTemps reports whether the unit, predicted to end outside the client's block
// with work of its own in the proxy's savepoint, must carry out on-commit actions of
// temporary tables, or materialise cursors WITH HOLD (hold.go), before its
// ReadyForQuery.
func (c *txClient) commitsTemps() bool {
	return !c.skipMode && !c.st.block && c.st.sp != spNone && (c.temps.any() || len(c.holds) > 0)
}

// endTemps follows a client statement that may end a transaction: the tables of a
// commit's DROP are gone, and a rollback undoes the CREATEs of the block. A COMMIT
// outside a block that ends a query string leaves that to the end of the string.
func (c *txClient) endTemps(t txStmt, wasBlock, failed, last bool) {
	switch {
	case t.kind == sqllex.Commit && wasBlock && !failed, t.kind == sqllex.Commit && !wasBlock && !t.chain && !last:
		c.temps.committed()
		c.holds = nil // materialised by the rewrite
	case wasBlock && (t.kind == sqllex.Commit || t.kind == sqllex.Rollback || t.kind == sqllex.PrepareTransaction),
		!wasBlock && t.kind == sqllex.Rollback && !t.chain:
		c.temps.rolledBack()
		c.holds = nil // closed by the rollback
	}
}

// commitTemps materialises cursors WITH HOLD and carries out the on-commit actions at
// the end of an extended-protocol autocommit unit, after the client's unnamed portal is closed, as a plain server's
// commit drops it: left open, it would keep the tables it read in use.
func (c *txClient) commitTemps() error {
	if c.s.names == nil {
		if err := c.send(pending{msg: 'C', role: rolePart}, &pgproto3.Close{ObjectType: 'P'}); err != nil {
			return err
		}
	}
	for _, ps := range append(c.holdsAtCommit(effNone), c.temps.atCommit(effNone)...) {
		if err := c.inject(ps, false); err != nil {
			return err
		}
	}
	c.temps.committed()
	c.holds = nil
	return nil
}
