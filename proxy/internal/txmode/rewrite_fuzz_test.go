package txmode

import (
	"testing"
	"unicode/utf8"

	"github.com/pgtestproxy/pgtestproxy/internal/sqllex"
)

// The rewrite of any query string, in any state (with or without deferrable
// constraints to check), on a shared session key, never panics, is a query string the
// server splits into exactly the statements the plan expects replies for, and maps
// every error position back into the client's string.
func FuzzTxPlanQuery(f *testing.F) {
	for _, s := range []string{"BEGIN", "COMMIT; SELECT 1", "begin; savepoint a; rollback to a; commit and chain",
		"SELECT 'é'; END; ABORT; ;", "PREPARE TRANSACTION 'x'; SET TRANSACTION READ ONLY", "/* */ start transaction read only, deferrable",
		"CREATE FUNCTION f() RETURNS int BEGIN ATOMIC SELECT 1; END; COMMIT", "SELECT $$;$$; ROLLBACK", "release pgtestproxy",
		"DEALLOCATE ps; deallocate prepare \"ps\"; DEALLOCATE ALL", "SET search_path TO x -- c", "reset all; set schema 'y'"} {
		f.Add(s, false, false, false)
		f.Add(s, true, true, false)
		f.Add(s, false, false, true)
	}
	f.Fuzz(func(t *testing.T, sql string, block, failed, deferred bool) {
		// A session of a shared key, with statements of its own (deallocate.go).
		s := &Session{names: newTxNames(1)}
		s.names.define('S', "ps")
		s.names.define('S', "")
		c := &txClient{s: s, cn: &txConn{be: &Backend{}}, st: txState{block: block, sp: spClean}, failed: failed, failedKnown: true,
			stmts: map[string]txStmt{}}
		c.cn.be.deferrable.Store(deferred)
		plan, _, err := c.planQuery(sql)
		if err != nil {
			t.Fatal(err)
		}
		if plan == nil {
			return
		}
		real := 0
		for _, p := range sqllex.Split(plan.text) {
			if p.Kind != sqllex.Empty {
				real++
			}
		}
		if real != len(plan.stmts) {
			t.Fatalf("%q became %q: %d statements, plan has %d", sql, plan.text, real, len(plan.stmts))
		}
		n := int32(utf8.RuneCountInString(sql)) + 1
		for pos := int32(1); pos <= int32(utf8.RuneCountInString(plan.text))+1; pos++ {
			if got := plan.mapPosition(pos); got < 1 || got > n {
				t.Fatalf("%q: position %d in %q maps to %d", sql, pos, plan.text, got)
			}
		}
	})
}
