package proxy

import (
	"net/url"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/pgtestproxy/pgtestproxy/internal/leasemode"
	"github.com/pgtestproxy/pgtestproxy/internal/testpg"
)

// A client that names a role of the upstream runs as it in both modes, and keeps it
// through RESET ROLE and RESET ALL (and DISCARD ALL in db mode) as a plain server keeps
// the login role (session_user stays the proxy's role); in tx mode a later connection of the same session key starts as its
// own role again. A name the upstream does not know runs as the proxy's role.
func TestClientRole(t *testing.T) {
	t.Parallel()
	p := newTestProvider(t)
	s := startProxy(t, Config{Provider: p})
	role, other := testpg.UniqueName(t, "r_"), testpg.UniqueName(t, "r2_")
	testpg.Exec(t, testpg.AdminURL(t), "CREATE ROLE "+role+" LOGIN; CREATE ROLE "+other+"; GRANT "+other+" TO "+role)
	t.Cleanup(func() { testpg.Exec(t, testpg.AdminURL(t), "DROP ROLE "+role+"; DROP ROLE "+other) })
	ctx := testContext(t)
	as := func(user string, mode leasemode.Mode, query ...string) *pgx.Conn {
		u, err := url.Parse(proxyURL(s, "app", append([]string{"mode=" + string(mode)}, query...)...))
		if err != nil {
			t.Fatal(err)
		}
		u.User = url.User(user)
		return connect(t, u.String())
	}
	users := func(t *testing.T, c *pgx.Conn, sql string) (session, current string) {
		t.Helper()
		if _, err := c.Exec(ctx, sql, pgx.QueryExecModeSimpleProtocol); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
		if err := c.QueryRow(ctx, "SELECT session_user, current_user", pgx.QueryExecModeSimpleProtocol).Scan(&session, &current); err != nil {
			t.Fatal(err)
		}
		return session, current
	}
	var proxyRole string
	if err := connect(t, testpg.AdminURL(t)).QueryRow(ctx, "SELECT current_user").Scan(&proxyRole); err != nil {
		t.Fatal(err)
	}
	for _, mode := range []leasemode.Mode{leasemode.DB, leasemode.Tx} {
		t.Run(string(mode), func(t *testing.T) {
			c := as(role, mode)
			resets := []string{"SELECT 1", "RESET ROLE", "RESET ALL"}
			if mode == leasemode.DB {
				resets = append(resets, "DISCARD ALL")
			}
			for _, sql := range resets {
				if _, current := users(t, c, sql); current != role {
					t.Errorf("after %s: current_user %s, want %s", sql, current, role)
				}
			}
			if _, current := users(t, c, "SET ROLE "+other); current != other {
				t.Errorf("SET ROLE %s: current_user %s", other, current)
			}
			if _, current := users(t, as(proxyRole, mode), "SELECT 1"); current != proxyRole {
				t.Errorf("the proxy's role: current_user %s", current)
			}
			if _, current := users(t, as("no_such_role_anywhere", mode), "SELECT 1"); current != proxyRole {
				t.Errorf("an unknown role: current_user %s, want the proxy's %s", current, proxyRole)
			}
		})
	}
	t.Run("tx session key", func(t *testing.T) {
		first := as(role, leasemode.Tx, "session=roles")
		if _, current := users(t, first, "SET ROLE "+other); current != other {
			t.Fatalf("SET ROLE: current_user %s", current)
		}
		closed := func(c *pgx.Conn) { // and the proxy saw it go
			t.Helper()
			active := s.Stats().SessionsActive
			_ = c.Close(ctx)
			waitFor(t, "the session to end", func() bool { return s.Stats().SessionsActive < active })
		}
		closed(first)
		second := as(role, leasemode.Tx, "session=roles")
		if _, current := users(t, second, "SELECT 1"); current != role {
			t.Errorf("the next connection of the key: current_user %s, want %s", current, role)
		}
		closed(second)
		if _, current := users(t, as(proxyRole, leasemode.Tx, "session=roles"), "SELECT 1"); current != proxyRole {
			t.Errorf("the proxy's role after %s: current_user %s", role, current)
		}
	})
}
