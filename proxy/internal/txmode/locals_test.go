package txmode

import (
	"reflect"
	"testing"
)

// classifyLocal reads from a statement's text which settings it may set locally and
// which for the session.
func TestClassifyLocal(t *testing.T) {
	for _, tc := range []struct {
		sql  string
		want localOp
	}{
		{"SET LOCAL work_mem = '8MB'", localOp{stash: []string{"work_mem"}}},
		{`set local "Work_Mem" to 1`, localOp{stash: []string{"work_mem"}}},
		{"SET LOCAL myapp.user = 'u'", localOp{stash: []string{"myapp.user"}}},
		{"SET LOCAL TIME ZONE 'UTC'", localOp{stash: []string{"timezone"}}},
		{"SET LOCAL SCHEMA 'x'", localOp{stash: []string{"search_path"}}},
		{"SET LOCAL ROLE NONE", localOp{stash: []string{"role"}}},
		{"SET LOCAL SESSION AUTHORIZATION DEFAULT", localOp{stash: []string{"session_authorization"}}},
		{"SET work_mem = 1", localOp{session: []string{"work_mem"}}},
		{"SET SESSION work_mem = 1", localOp{session: []string{"work_mem"}}},
		{"SET SESSION AUTHORIZATION DEFAULT", localOp{session: []string{"session_authorization"}}},
		{"RESET work_mem", localOp{session: []string{"work_mem"}}},
		{"RESET ALL", localOp{}},
		{"SET CONSTRAINTS ALL IMMEDIATE", localOp{constraints: "IMMEDIATE"}},
		{"set constraints all deferred", localOp{constraints: "DEFERRED"}},
		{"SET CONSTRAINTS c1 IMMEDIATE", localOp{}},
		{"SELECT set_config('work_mem', '1MB', true)", localOp{stash: []string{"work_mem"}}},
		{"SELECT pg_catalog.SET_CONFIG ( 'a.b' , f('x', 'y') , TRUE ), set_config('c', 'd', false)",
			localOp{stash: []string{"a.b"}, session: []string{"c"}}},
		{"SELECT set_config($1, $2, true)", localOp{stashAll: true}},
		{"SELECT set_config('x', $2, $3)", localOp{}},
		{"SELECT set_config('x', 'y'", localOp{}},
		{"SELECT 'set_config'", localOp{}},
		{"SELECT 1", localOp{}},
		{`DO $$BEGIN SET LOCAL work_mem = 1; PERFORM set_config('a.b', 'x', true); END$$`, localOp{stash: []string{"a.b", "work_mem"}}},
		{`CREATE FUNCTION f() RETURNS void LANGUAGE plpgsql AS $f$BEGIN set
			local search_path = x; END$f$`, localOp{routine: []string{"search_path"}}},
		{"CREATE TABLE local (v int)", localOp{}},
	} {
		kw := ""
		if w := identName(firstWord(tc.sql)); w != "" {
			kw = w
		}
		got := classifyLocal(kw, tc.sql)
		if names := got.sessionNames(); got.sessionText != "" {
			got.session, got.sessionText = names, ""
		}
		if !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%q: got %+v, want %+v", tc.sql, got, tc.want)
		}
	}
}

func firstWord(s string) string {
	for i, c := range s {
		if c == ' ' {
			return s[:i]
		}
	}
	return s
}
