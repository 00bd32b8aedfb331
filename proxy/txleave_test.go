package proxy

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/pgtestproxy/pgtestproxy/internal/leasemode"
)

// sendAll writes msgs in one write.
func (r *rawSession) sendAll(t *testing.T, msgs ...pgproto3.FrontendMessage) {
	t.Helper()
	for _, m := range msgs {
		r.fe.Send(m)
	}
	if err := r.fe.Flush(); err != nil {
		t.Fatal(err)
	}
}

// untilReady reads messages up to a ReadyForQuery and returns them, normalised.
func (r *rawSession) untilReady(t *testing.T) []string {
	t.Helper()
	var got []string
	for {
		m, err := r.fe.Receive()
		if err != nil {
			t.Fatalf("after %q: %v", got, err)
		}
		got = append(got, normalise(m))
		if _, ok := m.(*pgproto3.ReadyForQuery); ok {
			return got
		}
	}
}

// expectExactly reads exactly len(want) messages and fails unless they are want.
func (r *rawSession) expectExactly(t *testing.T, want []string) {
	t.Helper()
	_ = r.conn.SetReadDeadline(time.Now().Add(30 * time.Second))
	var got []string
	for range want {
		m, err := r.fe.Receive()
		if err != nil {
			t.Fatalf("after %q: %v", got, err)
		}
		got = append(got, normalise(m))
	}
	if !slices.Equal(got, want) {
		t.Fatalf("messages\n got  %q\n want %q", got, want)
	}
}

// leave sends Terminate and closes the connection, as a client's end() does.
func (r *rawSession) leave(t *testing.T) {
	r.sendAll(t, &pgproto3.Terminate{})
	_ = r.conn.Close()
}

// probe is a pipelined round of a simple and an extended query (the forms clients
// queue) and the exact messages a plain server answers it with.
func probe(tag string) ([]pgproto3.FrontendMessage, []string) {
	msgs := []pgproto3.FrontendMessage{
		&pgproto3.Query{String: "SELECT '" + tag + "' AS q"},
		&pgproto3.Parse{Query: "SELECT $1::text AS e"},
		&pgproto3.Bind{Parameters: [][]byte{[]byte(tag)}},
		&pgproto3.Describe{ObjectType: 'P'},
		&pgproto3.Execute{},
		&pgproto3.Sync{},
		&pgproto3.Query{String: "SELECT count(*) AS n FROM items WHERE id = 99"},
	}
	row := func(col string, oid int, val string) []string {
		return []string{fmt.Sprintf("RowDescription %s:%d", col, oid), fmt.Sprintf("DataRow %q", val),
			"CommandComplete SELECT 1", "ReadyForQuery I"}
	}
	want := slices.Concat(row("q", 25, tag), []string{"ParseComplete", "BindComplete"}, row("e", 25, tag),
		row("n", 20, "0"))
	return msgs, want
}

// Issue 15 item 8: a connection of a shared tx-mode key gets exactly what a plain
// server would send it, message for message, while and after a neighbour of its key
// leaves mid-stream (Terminate, then close): mid-query, with a pipelined queue of
// simple or extended units, mid-extended-unit without Sync, mid-block (running or
// idle). The neighbour's running statement is cancelled, so the others never wait
// for it (its pg_sleep(600) would outlast the test), and the lease goes on.
func TestTxSharedLeaveMidStream(t *testing.T) {
	t.Parallel()
	sleep := "SELECT pg_sleep(600)"
	ext := func(sql string) []pgproto3.FrontendMessage {
		return []pgproto3.FrontendMessage{&pgproto3.Parse{Query: sql}, &pgproto3.Bind{}, &pgproto3.Execute{}}
	}
	block := []pgproto3.FrontendMessage{&pgproto3.Query{String: "BEGIN; INSERT INTO items VALUES (99, 'left')"}}
	cases := []struct {
		name    string
		setup   []pgproto3.FrontendMessage // sent and answered before the neighbour goes on
		send    []pgproto3.FrontendMessage // sent, not answered, before it leaves
		running bool                       // a pg_sleep runs when it leaves
		copying bool                       // a COPY FROM STDIN runs when it leaves
	}{
		{name: "query", send: []pgproto3.FrontendMessage{&pgproto3.Query{String: sleep}}, running: true},
		{name: "pipelined queries", send: []pgproto3.FrontendMessage{&pgproto3.Query{String: sleep},
			&pgproto3.Query{String: "SELECT 2"}, &pgproto3.Query{String: "SELECT 3"}}, running: true},
		{name: "pipelined extended", send: slices.Concat(ext(sleep), []pgproto3.FrontendMessage{&pgproto3.Sync{}},
			ext("SELECT 2"), []pgproto3.FrontendMessage{&pgproto3.Sync{}}), running: true},
		{name: "extended without sync", send: append(ext(sleep), &pgproto3.Flush{}), running: true},
		{name: "extended half sent", send: []pgproto3.FrontendMessage{&pgproto3.Parse{Query: "SELECT 1"}, &pgproto3.Flush{}}},
		{name: "block running", setup: block, send: []pgproto3.FrontendMessage{&pgproto3.Query{String: sleep}}, running: true},
		{name: "block extended", setup: block, send: append(ext(sleep), &pgproto3.Flush{}), running: true},
		{name: "block idle", setup: block},
		{name: "copy", send: []pgproto3.FrontendMessage{&pgproto3.Query{String: "COPY items FROM STDIN"},
			&pgproto3.CopyData{Data: []byte("50\tfifty\n")}}, copying: true},
		{name: "extended copy", send: slices.Concat(ext("COPY items FROM STDIN"), []pgproto3.FrontendMessage{&pgproto3.Sync{},
			&pgproto3.CopyData{Data: []byte("51\tfifty-one\n")}}), copying: true},
		// Left before the server's CopyInResponse reached the proxy (the fuzz seed
		// copy-cut): the COPY starts after the client's end was seen.
		{name: "copy at once", send: []pgproto3.FrontendMessage{&pgproto3.Query{String: "COPY items FROM STDIN"},
			&pgproto3.CopyData{Data: []byte("52\tfifty-two\n")}}},
		{name: "extended copy at once", send: slices.Concat(ext("COPY items FROM STDIN"), []pgproto3.FrontendMessage{&pgproto3.Sync{},
			&pgproto3.CopyData{Data: []byte("53\tfifty-three\n")}})},
		{name: "extended copy at once without sync", send: slices.Concat(ext("COPY items FROM STDIN"), []pgproto3.FrontendMessage{
			&pgproto3.Flush{}, &pgproto3.CopyData{Data: []byte("54\tfifty-four\n")}})},
		// A row the COPY rejects ends it before the server reads what follows (a
		// Sync, the proxy's CopyFail), as a cancel landing mid-COPY does.
		{name: "copy of a bad row", send: []pgproto3.FrontendMessage{&pgproto3.Query{String: "COPY items FROM STDIN"},
			&pgproto3.CopyData{Data: []byte("x\tbad\n")}}},
		{name: "extended copy of a bad row", send: slices.Concat(ext("COPY items FROM STDIN"), []pgproto3.FrontendMessage{&pgproto3.Sync{},
			&pgproto3.CopyData{Data: []byte("x\tbad\n")}})},
		{name: "extended copy of a bad row without sync", send: slices.Concat(ext("COPY items FROM STDIN"), []pgproto3.FrontendMessage{
			&pgproto3.Flush{}, &pgproto3.CopyData{Data: []byte("x\tbad\n")}})},
		{name: "after sync", send: slices.Concat(ext("SELECT 1"), []pgproto3.FrontendMessage{&pgproto3.Sync{}})},
		{name: "failed query", send: []pgproto3.FrontendMessage{&pgproto3.Query{String: "SELECT 1/0"}, &pgproto3.Query{String: "SELECT 2"}}},
		{name: "failed extended", send: slices.Concat(ext("SELECT 1/0"), []pgproto3.FrontendMessage{&pgproto3.Sync{}},
			ext("SELECT 2"), []pgproto3.FrontendMessage{&pgproto3.Sync{}})},
		{name: "failed in block", setup: block, send: slices.Concat(ext("SELECT 1/0"), []pgproto3.FrontendMessage{&pgproto3.Sync{},
			&pgproto3.Query{String: "SELECT 2"}})},
		{name: "pipelined after sync", send: slices.Concat(ext("SELECT 1"), []pgproto3.FrontendMessage{&pgproto3.Sync{}},
			ext("SELECT 2"), []pgproto3.FrontendMessage{&pgproto3.Sync{}, &pgproto3.Query{String: "SELECT 3"}})},
	}
	p := newTestProvider(t)
	s := startProxy(t, Config{Provider: p, Linger: time.Hour})
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			key := fmt.Sprintf("leave%d", i)
			url := modeURL(s, leasemode.Tx, "app", "session="+key)
			stay, other := openRaw(t, url), openRaw(t, url)
			msgs, want := probe("before")
			stay.sendAll(t, msgs...)
			stay.expectExactly(t, want)
			clone := leaseOf(t, stay)
			gone := openRaw(t, url)
			if len(tc.setup) > 0 {
				gone.sendAll(t, tc.setup...)
				gone.untilReady(t)
			}
			gone.sendAll(t, tc.send...)
			if tc.running {
				waitSleeping(t, clone)
			}
			if tc.copying {
				waitBackendRuns(t, []string{clone}, tc.send)
			}
			// Both stay and other queue their rounds behind the neighbour's turn.
			msgs, want = probe("queued")
			stay.sendAll(t, msgs...)
			other.sendAll(t, msgs...)
			gone.leave(t)
			stay.expectExactly(t, want)
			other.expectExactly(t, want)
			msgs, want = probe("after")
			other.sendAll(t, msgs...)
			stay.sendAll(t, msgs...)
			other.expectExactly(t, want)
			stay.expectExactly(t, want)

			// The key's next connections: one that joins them, and, once all
			// left, one after a neighbour that left alone mid-stream.
			next := openRaw(t, url)
			msgs, want = probe("next")
			next.sendAll(t, msgs...)
			next.expectExactly(t, want)
			stay.leave(t)
			other.leave(t)
			next.leave(t)
			alone := openRaw(t, url)
			if len(tc.setup) > 0 {
				alone.sendAll(t, tc.setup...)
				alone.untilReady(t)
			}
			alone.sendAll(t, tc.send...)
			if tc.running {
				waitSleeping(t, clone)
			}
			if tc.copying {
				waitBackendRuns(t, []string{clone}, tc.send)
			}
			alone.leave(t)
			last := openRaw(t, url)
			msgs, want = probe("last")
			last.sendAll(t, msgs...)
			last.expectExactly(t, want)
		})
	}
	if n := p.acquired(); n != len(cases) {
		t.Fatalf("%d leases for %d keys: a lease was lost", n, len(cases))
	}
	for _, r := range p.releases() {
		if !r.clean {
			t.Fatalf("lease %s released unclean", r.database)
		}
	}
}

// leaseOf returns the name of r's clone.
func leaseOf(t *testing.T, r *rawSession) string {
	t.Helper()
	r.sendAll(t, &pgproto3.Query{String: "SELECT current_database()"})
	got := r.untilReady(t)
	if len(got) != 4 || !strings.HasPrefix(got[1], "DataRow ") {
		t.Fatalf("current_database: %q", got)
	}
	name, err := strconv.Unquote(strings.TrimPrefix(got[1], "DataRow "))
	if err != nil {
		t.Fatal(err)
	}
	return name
}
