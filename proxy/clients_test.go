package proxy

import (
	"bytes"
	"context"
	"database/sql"
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
	_ "github.com/jackc/pgx/v5/stdlib"
	_ "github.com/lib/pq"

	"github.com/pgtestproxy/pgtestproxy/internal/leasemode"
	"github.com/pgtestproxy/pgtestproxy/internal/testpg"
)

// What real applications do over pgx works in every mode.
func TestPgxThroughProxy(t *testing.T) {
	t.Parallel()
	p := newTestProvider(t)
	s := startProxy(t, Config{Provider: p})
	tests := []struct {
		name string
		run  func(t *testing.T, ctx context.Context, c *pgx.Conn)
	}{
		{"batch pipeline", pgxBatch},
		{"copy in and out", pgxCopy},
		{"row over 16MB", pgxLargeRow},
		{"nulls", pgxNulls},
		{"binary formats", pgxBinary},
		{"protocol 3.2 negotiated down", func(t *testing.T, ctx context.Context, c *pgx.Conn) {
			if v := c.PgConn().ParameterStatus("server_version"); v == "" {
				t.Fatal("no server_version reported")
			}
		}},
	}
	forEachMode(t, func(t *testing.T, mode leasemode.Mode) {
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				t.Parallel()
				url := modeURL(s, mode, "app")
				if strings.Contains(tc.name, "3.2") {
					url = modeURL(s, mode, "app", "max_protocol_version=3.2")
				}
				tc.run(t, testContext(t), connect(t, url))
			})
		}
	})
}

func pgxBatch(t *testing.T, ctx context.Context, c *pgx.Conn) {
	b := &pgx.Batch{}
	b.Queue("INSERT INTO items VALUES (10, 'ten')")
	b.Queue("SELECT name FROM items WHERE id = $1", 10)
	b.Queue("SELECT count(*) FROM items")
	res := c.SendBatch(ctx, b)
	if _, err := res.Exec(); err != nil {
		t.Fatal(err)
	}
	var name string
	if err := res.QueryRow().Scan(&name); err != nil || name != "ten" {
		t.Fatalf("batch select: %q, %v", name, err)
	}
	var n int
	if err := res.QueryRow().Scan(&n); err != nil || n != 4 {
		t.Fatalf("batch count: %d, %v", n, err)
	}
	if err := res.Close(); err != nil {
		t.Fatal(err)
	}
}

func pgxCopy(t *testing.T, ctx context.Context, c *pgx.Conn) {
	rows := make([][]any, 5000)
	for i := range rows {
		rows[i] = []any{int32(1000 + i), fmt.Sprintf("row %d", i)}
	}
	n, err := c.CopyFrom(ctx, pgx.Identifier{"items"}, []string{"id", "name"}, pgx.CopyFromRows(rows))
	if err != nil || n != int64(len(rows)) {
		t.Fatalf("copy in: %d rows, %v", n, err)
	}
	var out bytes.Buffer
	tag, err := c.PgConn().CopyTo(ctx, &out, "COPY (SELECT id, name FROM items ORDER BY id) TO STDOUT")
	if err != nil {
		t.Fatal(err)
	}
	if tag.RowsAffected() != int64(len(rows)+3) || !strings.HasPrefix(out.String(), "1\tone\n") {
		t.Fatalf("copy out: %s, starts %q", tag, out.String()[:20])
	}
}

func pgxLargeRow(t *testing.T, ctx context.Context, c *pgx.Conn) {
	big := strings.Repeat("x", 17<<20)
	if _, err := c.Exec(ctx, "CREATE TABLE big (v text)"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Exec(ctx, "INSERT INTO big VALUES ($1)", big); err != nil {
		t.Fatal(err)
	}
	var got string
	if err := c.QueryRow(ctx, "SELECT v || 'y' FROM big").Scan(&got); err != nil {
		t.Fatal(err)
	}
	if len(got) != len(big)+1 || got[len(got)-1] != 'y' {
		t.Fatalf("read back %d bytes, want %d", len(got), len(big)+1)
	}
}

func pgxNulls(t *testing.T, ctx context.Context, c *pgx.Conn) {
	var i *int32
	var s *string
	var b []byte
	if err := c.QueryRow(ctx, "SELECT NULL::int, $1::text, NULL::bytea", nil).Scan(&i, &s, &b); err != nil {
		t.Fatal(err)
	}
	if i != nil || s != nil || b != nil {
		t.Fatalf("NULLs came back as %v %v %v", i, s, b)
	}
}

func pgxBinary(t *testing.T, ctx context.Context, c *pgx.Conn) {
	ts := time.Date(2024, 2, 29, 12, 34, 56, 789000000, time.UTC)
	var (
		n   int64
		f   float64
		by  []byte
		tm  time.Time
		arr []int32
		num pgtype.Numeric
		u   pgtype.UUID
	)
	err := c.QueryRow(ctx, "SELECT $1::int8, $2::float8, $3::bytea, $4::timestamptz, $5::int4[], 12345.678::numeric, 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'::uuid",
		pgx.QueryResultFormats{pgx.BinaryFormatCode}, int64(1)<<40, 2.5, []byte{0, 1, 255}, ts, []int32{1, 2, 3}).
		Scan(&n, &f, &by, &tm, &arr, &num, &u)
	if err != nil {
		t.Fatal(err)
	}
	if n != 1<<40 || f != 2.5 || !bytes.Equal(by, []byte{0, 1, 255}) || !tm.Equal(ts) || len(arr) != 3 || !num.Valid || !u.Valid {
		t.Fatalf("binary round trip: %v %v %v %v %v %v %v", n, f, by, tm, arr, num, u)
	}
}

// LISTEN/NOTIFY works between connections that share a database through a session key.
// db mode only: in tx mode pg_notify() is not delivered (README, FAQ; the NOTIFY
// statement is, TestTxNotifyBetweenConnections).
func TestListenNotify(t *testing.T) {
	t.Parallel()
	p := newTestProvider(t)
	s := startProxy(t, Config{Provider: p})
	ctx := testContext(t)
	listener := connect(t, proxyURL(s, "app", "session=notify"))
	notifier := connect(t, proxyURL(s, "app", "session=notify"))
	if _, err := listener.Exec(ctx, "LISTEN events"); err != nil {
		t.Fatal(err)
	}
	if _, err := notifier.Exec(ctx, "SELECT pg_notify('events', 'hello')"); err != nil {
		t.Fatal(err)
	}
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	n, err := listener.WaitForNotification(wctx)
	if err != nil {
		t.Fatal(err)
	}
	if n.Channel != "events" || n.Payload != "hello" {
		t.Fatalf("got notification %+v", n)
	}
}

// database/sql works with both common drivers, including runtime parameters and a
// session key shared by the pool.
func TestDatabaseSQLDrivers(t *testing.T) {
	t.Parallel()
	p := newTestProvider(t)
	s := startProxy(t, Config{Provider: p})
	forEachMode(t, func(t *testing.T, mode leasemode.Mode) { testDatabaseSQLDrivers(t, s, mode) })
}

func testDatabaseSQLDrivers(t *testing.T, s *Server, mode leasemode.Mode) {
	for _, driver := range []string{"pgx", "postgres"} {
		t.Run(driver, func(t *testing.T) {
			t.Parallel()
			ctx := testContext(t)
			db, err := sql.Open(driver, proxyURL(s, "app", "session=sql-"+driver+string(mode), "application_name=drv-"+driver,
				"options=-c%20pgtestproxy.mode%3D"+string(mode)))
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			db.SetMaxOpenConns(3)
			conns := make([]*sql.Conn, 3)
			names := map[string]bool{}
			for i := range conns {
				if conns[i], err = db.Conn(ctx); err != nil {
					t.Fatal(err)
				}
				var name, app string
				if err := conns[i].QueryRowContext(ctx, "SELECT current_database(), current_setting('application_name')").Scan(&name, &app); err != nil {
					t.Fatal(err)
				}
				if app != "drv-"+driver {
					t.Errorf("application_name %q did not reach the upstream", app)
				}
				names[name] = true
			}
			if len(names) != 1 {
				t.Fatalf("pool connections got databases %v, want one shared", names)
			}
			var count int
			var nullName sql.NullString
			if err := conns[2].QueryRowContext(ctx, "SELECT count(*), NULL::text FROM items WHERE id = $1", 2).Scan(&count, &nullName); err != nil || count != 1 || nullName.Valid {
				t.Fatalf("query: %d %v %v", count, nullName, err)
			}
			for _, c := range conns {
				_ = c.Close()
			}
		})
	}
}

// lib/pq asking for protocol 3.2 is negotiated down to 3.0 and works.
func TestLibpqProtocol32(t *testing.T) {
	t.Parallel()
	p := newTestProvider(t)
	s := startProxy(t, Config{Provider: p})
	forEachMode(t, func(t *testing.T, mode leasemode.Mode) {
		db, err := sql.Open("postgres", modeURL(s, mode, "app", "max_protocol_version=3.2"))
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		var n int
		if err := db.QueryRowContext(testContext(t), "SELECT count(*) FROM items").Scan(&n); err != nil || n != 3 {
			t.Fatalf("count: %d, %v", n, err)
		}
	})
}

// psql with PGOPTIONS: the proxy's settings are taken out, the rest reaches the
// upstream, and the session key shares a database across psql runs.
func TestPsql(t *testing.T) {
	t.Parallel()
	psql := testpg.Psql(t)
	p := newTestProvider(t)
	s := startProxy(t, Config{Provider: p, Linger: 10 * time.Second})
	forEachMode(t, func(t *testing.T, mode leasemode.Mode) {
		run := func(sql string) string {
			t.Helper()
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			cmd := exec.CommandContext(ctx, psql, "-X", "-At", "-v", "ON_ERROR_STOP=1", "-c", sql, proxyURL(s, "app"))
			cmd.Env = append(cmd.Environ(), `PGOPTIONS=-c pgtestproxy.session=psql\ key -c search_path=custom,public -c pgtestproxy.mode=`+string(mode))
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("psql -c %q: %v\n%s", sql, err, out)
			}
			return strings.TrimSpace(string(out))
		}
		first := run("SELECT current_database() || ' ' || current_setting('search_path')")
		db, path, _ := strings.Cut(first, " ")
		if path != "custom,public" {
			t.Errorf("search_path from PGOPTIONS is %q", path)
		}
		if got := run("SELECT current_database()"); got != db {
			t.Errorf("second psql with the same session key got %s, want %s", got, db)
		}
		if got := run("SELECT coalesce(current_setting('pgtestproxy.session', true), 'unset')"); got != "unset" {
			t.Errorf("pgtestproxy.session reached the upstream: %q", got)
		}
	})
}
