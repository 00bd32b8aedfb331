package proxy

import (
	"context"
	"slices"
	"sync/atomic"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
)

// panicOnce is a panic hook that panics once, at the first call from goroutine kind
// where after it was armed.
type panicOnce struct {
	where string
	armed atomic.Bool
}

func (p *panicOnce) hook(where string) {
	if where == p.where && p.armed.CompareAndSwap(true, false) {
		panic("injected panic in " + where)
	}
}

// A panic in any goroutine that touches a client's bytes ends only that client's
// session with FATAL XX000, is counted in SHOW STATS, and the proxy serves on: a db-
// and a tx-mode session open at the time keep working, and new connections are served.
func TestPanicEndsOnlyItsSession(t *testing.T) {
	t.Parallel()
	simple := "default_query_exec_mode=simple_protocol"
	cases := []struct {
		where  string
		victim func(t *testing.T, ctx context.Context, s *Server) error // the victim's failure
	}{
		{"session", func(t *testing.T, ctx context.Context, s *Server) error {
			c, err := pgx.Connect(ctx, proxyURL(s, "app"))
			if err == nil {
				_ = c.Close(ctx)
			}
			return err
		}},
		{"console", func(t *testing.T, ctx context.Context, s *Server) error {
			_, err := connect(t, proxyURL(s, adminDatabase, simple)).Exec(ctx, "SHOW STATS")
			return err
		}},
		{"relay client to upstream", victimQuery("mode=db")},
		{"relay upstream to client", victimQuery("mode=db")},
		{"tx client pump", victimQuery("mode=tx")},
		{"tx server pump", victimQuery("mode=tx")},
		{"cancel forwarder", func(t *testing.T, ctx context.Context, s *Server) error {
			pc := connect(t, proxyURL(s, "app")).PgConn()
			raw := rawConn(t, s)
			req, err := (&pgproto3.CancelRequest{ProcessID: pc.PID(), SecretKey: pc.SecretKey()}).Encode(nil)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := raw.Write(req); err != nil {
				t.Fatal(err)
			}
			e := readFatal(t, raw)
			return &pgconn.PgError{Severity: e.Severity, Code: e.Code, Message: e.Message}
		}},
		{"tx cancel watcher", func(t *testing.T, ctx context.Context, s *Server) error {
			// A CancelRequest that comes while the proxy's savepoint statements of the
			// unit are pending (the unit after an INSERT) is held, and a watcher started.
			c := connect(t, proxyURL(s, "app", "mode=tx"))
			db := currentDatabase(t, c)
			if _, err := c.Exec(ctx, "INSERT INTO items VALUES (10, 'ten')"); err != nil {
				t.Fatal(err)
			}
			done := make(chan error, 1)
			go func() {
				_, err := c.PgConn().Exec(context.Background(), "SELECT pg_sleep(30)").ReadAll()
				done <- err
			}()
			waitSleeping(t, db)
			if err := c.PgConn().CancelRequest(ctx); err != nil {
				t.Fatal(err)
			}
			return <-done
		}},
	}
	for _, tc := range cases {
		t.Run(tc.where, func(t *testing.T) {
			t.Parallel()
			inject := &panicOnce{where: tc.where}
			s := startProxy(t, Config{Provider: newTestProvider(t), panicHook: inject.hook})
			ctx := testContext(t)
			others := []*pgx.Conn{connect(t, proxyURL(s, "app", "mode=db")), connect(t, proxyURL(s, "app", "mode=tx"))}
			for _, c := range others {
				selectOne(t, ctx, c)
			}
			inject.armed.Store(true)
			e := wantSQLState(t, tc.victim(t, ctx, s), "XX000")
			if e.Severity != "FATAL" || e.Message != "internal error in pgtestproxy" {
				t.Errorf("victim got %s %q, want FATAL \"internal error in pgtestproxy\"", e.Severity, e.Message)
			}
			if inject.armed.Load() {
				t.Fatal("the injected panic did not happen")
			}
			for _, c := range others {
				selectOne(t, ctx, c)
			}
			for _, mode := range []string{"mode=db", "mode=tx"} {
				selectOne(t, ctx, connect(t, proxyURL(s, "app", mode)))
			}
			if n := s.Stats().Panics; n != 1 {
				t.Errorf("SHOW STATS panics = %d, want 1", n)
			}
			cols, rows, err := queryStrings(ctx, connect(t, proxyURL(s, adminDatabase, simple)), "SHOW STATS")
			if i := slices.Index(cols, "panics"); err != nil || i < 0 || len(rows) != 1 || rows[0][i] != "1" {
				t.Errorf("SHOW STATS: %v %v (%v), want panics 1", cols, rows, err)
			}
		})
	}
}

// victimQuery is a victim that connects with the given parameter and runs a query.
func victimQuery(param string) func(t *testing.T, ctx context.Context, s *Server) error {
	return func(t *testing.T, ctx context.Context, s *Server) error {
		_, err := connect(t, proxyURL(s, "app", param)).Exec(ctx, "SELECT 1")
		return err
	}
}

func selectOne(t *testing.T, ctx context.Context, c *pgx.Conn) {
	t.Helper()
	var one int
	if err := c.QueryRow(ctx, "SELECT 1").Scan(&one); err != nil || one != 1 {
		t.Fatalf("SELECT 1 on a %s session: %d, %v", c.Config().RuntimeParams["mode"], one, err)
	}
}
