package txmode

import "testing"

// The client pump's planning of a statement tx mode passes on as written: what every
// autocommit statement pays, in the proxy's CPU, before it is forwarded.
func BenchmarkPlanQuery(b *testing.B) {
	for _, sql := range []string{"SELECT 1", "SELECT id, name FROM items WHERE id = 1", "SET application_name = 'x'"} {
		b.Run(sql, func(b *testing.B) {
			c := &txClient{cn: &txConn{be: &Backend{}}, st: txState{sp: spClean}, failedKnown: true}
			b.ReportAllocs()
			for range b.N {
				if _, _, err := c.planQuery(sql); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
