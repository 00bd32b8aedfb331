package proxy

import (
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/pgtestproxy/pgtestproxy/internal/leasemode"
)

// Connections sharing a tx-mode session key keep their own reported settings: what
// one SETs (time zone, string quoting, date style, encoding, application name) the
// others do not see, as on a plain server where each has its own backend; a
// connection's rollback and its failed statements keep its own values right; and the
// driver's view (ParameterStatus) matches what the server uses.
func TestTxSharedOwnSettings(t *testing.T) {
	// (search_path: TestTxSharedOwnSearchPath)
	t.Parallel()
	s := startProxy(t, Config{Provider: newTestProvider(t)})
	url := modeURL(s, leasemode.Tx, "app", "session=own-settings")
	a, b := connect(t, url), connect(t, url)
	show := func(c *pgx.Conn, name string) string {
		t.Helper()
		var v string
		if err := c.QueryRow(testContext(t), "SELECT current_setting($1)", name).Scan(&v); err != nil {
			t.Fatal(err)
		}
		return v
	}
	base := map[string]string{}
	for _, n := range []string{"TimeZone", "DateStyle", "standard_conforming_strings", "application_name", "IntervalStyle"} {
		base[n] = show(b, n)
	}

	mustExec(t, a, "SET TimeZone = 'America/New_York'")
	mustExec(t, a, "SET DateStyle = 'German'")
	mustExec(t, a, "SET standard_conforming_strings = off")
	mustExec(t, a, "SET application_name = 'conn-a'")
	mustExec(t, a, "SET IntervalStyle = 'sql_standard'")
	for n, want := range base {
		if got := show(b, n); got != want {
			t.Fatalf("b's %s is %q after a's SET; want its own %q", n, got, want)
		}
	}
	mustExec(t, b, "SET TimeZone = 'Asia/Tokyo'")
	for n, want := range map[string]string{"TimeZone": "America/New_York", "DateStyle": "German, DMY",
		"standard_conforming_strings": "off", "application_name": "conn-a", "IntervalStyle": "sql_standard"} {
		if got := show(a, n); got != want {
			t.Fatalf("a's %s is %q; want its own %q", n, got, want)
		}
		if got := a.PgConn().ParameterStatus(n); got != want {
			t.Fatalf("a's driver has %s = %q; want %q", n, got, want)
		}
	}

	// A rolled-back SET in a's block, and a failed statement of b's right after a
	// restore, keep each connection's value.
	mustExec(t, a, "BEGIN")
	mustExec(t, a, "SET TimeZone = 'Europe/Paris'")
	mustExec(t, a, "ROLLBACK")
	if _, err := b.Exec(testContext(t), "SELECT 1/0"); err == nil {
		t.Fatal("1/0 succeeded")
	}
	if got := show(b, "TimeZone"); got != "Asia/Tokyo" {
		t.Fatalf("b's TimeZone is %q after its failed statement; want Asia/Tokyo", got)
	}
	if got := show(a, "TimeZone"); got != "America/New_York" {
		t.Fatalf("a's TimeZone is %q after its rolled-back SET; want America/New_York", got)
	}
	if got := b.PgConn().ParameterStatus("TimeZone"); got != "Asia/Tokyo" {
		t.Fatalf("b's driver has TimeZone = %q; want Asia/Tokyo", got)
	}

	// A connection that joins later starts with the lease's values, not a's or b's, and
	// with its own application_name.
	c := connect(t, url+"&application_name=conn-c")
	if got, want := show(c, "TimeZone"), base["TimeZone"]; got != want || c.PgConn().ParameterStatus("TimeZone") != want {
		t.Fatalf("a joining connection's TimeZone is %q (driver %q); want %q", got, c.PgConn().ParameterStatus("TimeZone"), want)
	}
	if got := show(c, "application_name"); got != "conn-c" || c.PgConn().ParameterStatus("application_name") != "conn-c" {
		t.Fatalf("a joining connection's application_name is %q (driver %q); want conn-c", got, c.PgConn().ParameterStatus("application_name"))
	}
	if got := show(a, "application_name"); got != "conn-a" {
		t.Fatalf("a's application_name is %q after c joined; want conn-a", got)
	}

	// And with its own default_transaction_read_only: its transactions are read-only,
	// the others' are not.
	ro := connect(t, url+"&default_transaction_read_only=on")
	if got := show(ro, "transaction_read_only"); got != "on" {
		t.Fatalf("a joining read-only connection's transaction_read_only is %q; want on", got)
	}
	_, err := ro.Exec(testContext(t), "INSERT INTO items VALUES (40, 'ro')")
	wantSQLState(t, err, "25006")
	mustExec(t, b, "INSERT INTO items VALUES (41, 'rw')")
	if got := show(ro, "default_transaction_read_only"); got != "on" {
		t.Fatalf("the read-only connection's default_transaction_read_only is %q after b's insert; want on", got)
	}
}

// Connections sharing a tx-mode session key keep their own search_path, which the
// server does not report: one connection's SET (simple protocol), set_config (extended
// protocol), SET in a rolled-back block and RESET leave the others' as on a plain
// server, where each connection has its own.
func TestTxSharedOwnSearchPath(t *testing.T) {
	t.Parallel()
	s := startProxy(t, Config{Provider: newTestProvider(t)})
	url := modeURL(s, leasemode.Tx, "app", "session=own-path")
	a, b := connect(t, url), connect(t, url)
	path := func(c *pgx.Conn) string {
		t.Helper()
		var v string
		if err := c.QueryRow(testContext(t), "SHOW search_path").Scan(&v); err != nil {
			t.Fatal(err)
		}
		return v
	}
	base := path(b)

	mustExec(t, a, "SET search_path TO nowhere")
	if got := path(b); got != base {
		t.Fatalf("b's search_path is %q after a's SET; want %q", got, base)
	}
	mustExec(t, b, "CREATE TABLE own_path_t (x int)") // no schema to create in under a's path
	if got := path(a); got != "nowhere" {
		t.Fatalf("a's search_path is %q; want nowhere", got)
	}
	mustExec(t, b, "SELECT pg_catalog.set_config('search_path', $1, false)", "public, nowhere_b")
	if got := path(a); got != "nowhere" {
		t.Fatalf("a's search_path is %q after b's set_config; want nowhere", got)
	}
	if got := path(b); got != "public, nowhere_b" {
		t.Fatalf("b's search_path is %q; want public, nowhere_b", got)
	}

	mustExec(t, a, "BEGIN")
	mustExec(t, a, "SET search_path TO elsewhere")
	mustExec(t, a, "ROLLBACK")
	if got := path(b); got != "public, nowhere_b" {
		t.Fatalf("b's search_path is %q after a's rolled-back SET; want public, nowhere_b", got)
	}
	if got := path(a); got != "nowhere" {
		t.Fatalf("a's search_path is %q after its rolled-back SET; want nowhere", got)
	}
	mustExec(t, b, "RESET search_path")
	if got := path(a); got != "nowhere" {
		t.Fatalf("a's search_path is %q after b's RESET; want nowhere", got)
	}
	if got := path(b); got != base {
		t.Fatalf("b's search_path is %q after its RESET; want %q", got, base)
	}
	// A connection that joins later has the lease's.
	if got := path(connect(t, url)); got != base {
		t.Fatalf("a joining connection's search_path is %q; want %q", got, base)
	}
}
