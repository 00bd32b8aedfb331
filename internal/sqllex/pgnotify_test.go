package sqllex

import "testing"

func TestPgNotify(t *testing.T) {
	for _, tc := range []struct {
		sql  string
		want PgNotifyCall
		ok   bool
	}{
		{"SELECT pg_notify('ch', 'payload')", PgNotifyCall{Channel: "ch", Payload: "payload"}, true},
		{"select PG_CATALOG.PG_NOTIFY ( E'c\\'h' , 'it''s' ) ;", PgNotifyCall{Channel: "c'h", Payload: "it's"}, true},
		{"SELECT pg_notify($1, $2)", PgNotifyCall{ChannelParam: 1, PayloadParam: 2}, true},
		{"SELECT pg_notify($2::text, 'x'::text)", PgNotifyCall{ChannelParam: 2, Payload: "x"}, true},
		{"SELECT pg_notify('ch', $1) /* c */", PgNotifyCall{Channel: "ch", PayloadParam: 1}, true},
		{"SELECT pg_notify('ch', 'a' || 'b')", PgNotifyCall{}, false},
		{"SELECT pg_notify('ch', 'p'), 1", PgNotifyCall{}, false},
		{"SELECT pg_notify('ch', 'p') FROM items", PgNotifyCall{}, false},
		{"SELECT pg_notify('ch')", PgNotifyCall{}, false},
		{"SELECT x.pg_notify('ch', 'p')", PgNotifyCall{}, false},
		{"SELECT pg_notify('ch', 'p'); SELECT 1", PgNotifyCall{}, false},
		{"SELECT pg_notify('ch', $0)", PgNotifyCall{}, false},
	} {
		got, ok := PgNotify(tc.sql)
		if ok != tc.ok || (ok && got != tc.want) {
			t.Errorf("PgNotify(%q) = %+v, %v; want %+v, %v", tc.sql, got, ok, tc.want, tc.ok)
		}
	}
}
