package proxy

import (
	"context"
	"errors"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/pgtestproxy/pgtestproxy/internal/testpg"
)

// The admin console answers SHOW statements with ordinary result sets.
func TestAdminConsole(t *testing.T) {
	t.Parallel()
	var asked []string
	admin := func(_ context.Context, what string, _ bool) ([]string, [][]string, error) {
		asked = append(asked, what)
		if what == "STATS" {
			return []string{"clones_made"}, [][]string{{"7"}}, nil
		}
		if what == "POOLS" {
			return nil, nil, &sqlStateError{"XX000", "pool catalog unavailable"}
		}
		return []string{"name", "hash"}, [][]string{{"app", "abc123"}, {"other", "def456"}}, nil
	}
	s := startProxy(t, Config{Provider: &testProvider{t: t}, Admin: admin, Version: "1.2.3"})
	ctx := testContext(t)
	c := connect(t, proxyURL(s, adminDatabase, "default_query_exec_mode=simple_protocol"))

	tests := []struct {
		sql  string
		cols []string
		rows [][]string
		code string
	}{
		{"SHOW VERSION", []string{"version"}, [][]string{{"pgtestproxy 1.2.3"}}, ""},
		{"show templates;", []string{"name", "hash"}, [][]string{{"app", "abc123"}, {"other", "def456"}}, ""},
		{"SHOW POOLS", nil, nil, "XX000"},
		{"SHOW STATS", []string{"sessions_total", "sessions_active", "leases_total", "leases_active",
			"bytes_in", "bytes_out", "cancels", "errors", "panics"}, nil, ""},
		{"SHOW HELP", []string{"command", "description"}, adminCommands, ""},
		{"SHOW NONSENSE", nil, nil, "42704"},
		{"DROP DATABASE app", nil, nil, "42601"},
	}
	for _, tc := range tests {
		cols, rows, err := queryStrings(ctx, c, tc.sql)
		if tc.code != "" {
			e := wantSQLState(t, err, tc.code)
			if tc.code != "XX000" && !strings.Contains(e.Hint, "SHOW TEMPLATES") {
				t.Errorf("%s: hint %q does not list the commands", tc.sql, e.Hint)
			}
			continue
		}
		if err != nil {
			t.Fatalf("%s: %v", tc.sql, err)
		}
		if tc.sql == "SHOW STATS" {
			// The proxy's counters first, the provider's last.
			if len(cols) < len(tc.cols) || cols[len(cols)-1] != "clones_made" || rows[0][len(cols)-1] != "7" {
				t.Errorf("SHOW STATS: columns %v, rows %v: want the proxy's then clones_made=7", cols, rows)
			}
			i := slices.Index(cols, "goroutines")
			if n, err := strconv.Atoi(rows[0][max(i, 0)]); i < 0 || err != nil || n < 2 {
				t.Errorf("SHOW STATS: columns %v, rows %v: want goroutines, the process's count", cols, rows)
			}
			cols = cols[:min(len(cols), len(tc.cols))]
		}
		if strings.Join(cols, ",") != strings.Join(tc.cols, ",") {
			t.Errorf("%s: columns %v, want %v", tc.sql, cols, tc.cols)
		}
		if tc.rows != nil && !equalRows(rows, tc.rows) {
			t.Errorf("%s: rows %v, want %v", tc.sql, rows, tc.rows)
		}
		if tc.sql == "SHOW STATS" && (len(rows) != 1 || rows[0][1] != "1") {
			t.Errorf("SHOW STATS: %v, want one row with one active session", rows)
		}
	}
	if strings.Join(asked, ",") != "TEMPLATES,POOLS,STATS" {
		t.Errorf("admin func asked for %v", asked)
	}

	// pgx's default mode (Parse/Describe, then Bind/Execute, statement cached) works,
	// twice over the same prepared statement; an error ends at Sync and the console goes on.
	ext := connect(t, proxyURL(s, adminDatabase))
	for range 2 {
		var v string
		if err := ext.QueryRow(ctx, "SHOW VERSION").Scan(&v); err != nil || v != "pgtestproxy 1.2.3" {
			t.Fatalf("extended SHOW VERSION: %q, %v", v, err)
		}
	}
	_, err := ext.Exec(ctx, "SHOW NONSENSE")
	wantSQLState(t, err, "42704")
	var name string
	if err := ext.QueryRow(ctx, "SHOW TEMPLATES").Scan(&name, new(string)); err != nil || name != "app" {
		t.Fatalf("extended SHOW TEMPLATES after an error: %q, %v", name, err)
	}
}

func TestAdminConsoleWithoutAdminFunc(t *testing.T) {
	t.Parallel()
	s := startProxy(t, Config{Provider: &testProvider{t: t}})
	c := connect(t, proxyURL(s, adminDatabase, "default_query_exec_mode=simple_protocol"))
	_, _, err := queryStrings(testContext(t), c, "SHOW LEASES")
	wantSQLState(t, err, "0A000")

	psql := testpg.Psql(t)
	out, err := exec.Command(psql, "-X", "-At", "-c", "SHOW VERSION", proxyURL(s, adminDatabase)).CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "pgtestproxy devel" {
		t.Fatalf("psql SHOW VERSION: %v\n%s", err, out)
	}
}

func queryStrings(ctx context.Context, c *pgx.Conn, sql string) (cols []string, rows [][]string, err error) {
	r, err := c.Query(ctx, sql, pgx.QueryExecModeSimpleProtocol)
	if err != nil {
		return nil, nil, err
	}
	defer r.Close()
	for _, f := range r.FieldDescriptions() {
		cols = append(cols, f.Name)
	}
	for r.Next() {
		var row []string
		for _, v := range r.RawValues() {
			row = append(row, string(v))
		}
		rows = append(rows, row)
	}
	if err := r.Err(); err != nil {
		return nil, nil, err
	}
	if cols == nil {
		return nil, nil, errors.New("no result set")
	}
	return cols, rows, nil
}

func equalRows(a, b [][]string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if strings.Join(a[i], "\x00") != strings.Join(b[i], "\x00") {
			return false
		}
	}
	return true
}
