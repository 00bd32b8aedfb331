package txmode

import (
	"testing"
)

// The client pump's planning of a statement tx mode passes on as written: what every
// autocommit statement pays, in the proxy's CPU, before it is forwarded.
func BenchmarkPlanQuery(b *testing.B) {
	for _, sql := range []string{"SELECT 1", "SELECT 1;", "SELECT id, name FROM items WHERE id = 1", "SET application_name = 'x'"} {
		b.Run(sql, func(b *testing.B) {
			c := &txClient{s: &Session{}, cn: &txConn{be: &Backend{}}, st: txState{sp: spClean}, failedKnown: true}
			b.ReportAllocs()
			for range b.N {
				if _, _, err := c.planQuery(sql); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// A statement that ends with a semicolon (as pgbench's do), or blanks or a comment,
// is planned about as cheaply as the same statement alone: it goes to the server as
// written, with no plan built for it.
func TestPlanQueryTrailingSemicolon(t *testing.T) {
	const stmt = "SELECT abalance FROM pgbench_accounts WHERE aid = 1"
	plan := func(sql string) float64 {
		c := &txClient{s: &Session{}, cn: &txConn{be: &Backend{}}, st: txState{sp: spClean}, failedKnown: true}
		return testing.AllocsPerRun(100, func() {
			p, _, err := c.planQuery(sql)
			if err != nil || p != nil {
				t.Fatalf("planQuery(%q) = %v, %v; want it sent as written", sql, p, err)
			}
		})
	}
	alone := plan(stmt)
	for _, sql := range []string{stmt + ";", stmt + "; ", stmt + "; -- done"} {
		// One more: the list of the string's pieces holds two.
		if got := plan(sql); got > alone+1 {
			t.Errorf("planQuery(%q): %.0f allocations, %.0f for the statement alone", sql, got, alone)
		}
	}
}
