package txmode

import (
	"strings"
	"testing"

	"github.com/pgtestproxy/pgtestproxy/internal/sqllex"
)

func TestOnCommitTable(t *testing.T) {
	for _, tc := range []struct {
		sql  string
		want tempTable
	}{
		{"CREATE TEMP TABLE t (v int) ON COMMIT DELETE ROWS", tempTable{name: "t", act: ocDeleteRows}},
		{"create global temporary table T(v int)on commit drop", tempTable{name: "t", act: ocDrop}},
		{`CREATE LOCAL TEMP TABLE IF NOT EXISTS "A b" (v int) ON COMMIT DROP`, tempTable{name: "A b", act: ocDrop, ifNotExists: true}},
		{"CREATE TABLE pg_temp.t (v int DEFAULT 'on commit drop') ON COMMIT DELETE ROWS", tempTable{name: "t", act: ocDeleteRows}},
		{"CREATE TEMP TABLE t (v numeric(3, 2), CHECK (v > 0)) WITH (fillfactor = 50) ON COMMIT DROP", tempTable{name: "t", act: ocDrop}},
		{"CREATE TEMP TABLE t ON COMMIT DROP AS SELECT 1", tempTable{name: "t", act: ocDrop}},
		{"CREATE TEMP TABLE t AS SELECT 1 AS on, 2 AS commit", tempTable{name: "t", act: ocPreserve}},
		{"CREATE TEMP TABLE t (v int) ON COMMIT PRESERVE ROWS", tempTable{name: "t", act: ocPreserve}},
		{"CREATE TEMP TABLE t (v int)", tempTable{name: "t", act: ocPreserve}},
		{"CREATE TABLE t (v int)", tempTable{}},
		{"CREATE TABLE public.t (v int)", tempTable{}},
		{"CREATE UNLOGGED TABLE t (v int)", tempTable{}},
		{"CREATE TEMP VIEW v AS SELECT 1", tempTable{}},
		{"CREATE TEMP TABLE", tempTable{}},
	} {
		st := sqllex.Classify(tc.sql)
		if got := onCommitTable(strings.ToLower(sqllex.Keyword(st.Text)), st.Text); got != tc.want {
			t.Errorf("%s: got %+v, want %+v", tc.sql, got, tc.want)
		}
	}
}
