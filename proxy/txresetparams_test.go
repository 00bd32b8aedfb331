package proxy

import (
	"testing"
	"time"

	"github.com/pgtestproxy/pgtestproxy/internal/leasemode"
)

// The next connection of a session key, after the others left, sees the settings its
// own startup packet makes, and the server's defaults for those that only the first
// connection's startup packet made (which the backend was opened with, and which RESET
// ALL returns to).
func TestTxSessionKeyNextConnectionOwnStartup(t *testing.T) {
	t.Parallel()
	s := startProxy(t, Config{Provider: newTestProvider(t), Linger: 10 * time.Second})
	ctx := testContext(t)
	settings := func(query ...string) (app, path, dates string) {
		c := connect(t, modeURL(s, leasemode.Tx, "app", append([]string{"session=own-startup"}, query...)...))
		if err := c.QueryRow(ctx, "SELECT current_setting('application_name'), current_setting('search_path'), current_setting('DateStyle')").
			Scan(&app, &path, &dates); err != nil {
			t.Fatal(err)
		}
		_ = c.Close(ctx)
		waitFor(t, "the connection's session to end", func() bool { return s.Stats().SessionsActive == 0 })
		return app, path, dates
	}
	app, path, dates := settings("application_name=first", "options=-c%20search_path%3Dfirst_path%20-c%20DateStyle%3DGerman")
	if app != "first" || path != "first_path" || dates != "German, DMY" {
		t.Fatalf("the first connection sees %q, %q, %q", app, path, dates)
	}
	app, path, dates = settings()
	if app != "" || path != `"$user", public` || dates != "ISO, MDY" {
		t.Fatalf("a connection without startup settings sees %q, %q, %q: the first connection's, not the server's defaults", app, path, dates)
	}
	app, path, dates = settings("application_name=third", "options=-c%20DateStyle%3DSQL")
	if app != "third" || path != `"$user", public` || dates != "SQL, MDY" {
		t.Fatalf("a connection with its own startup settings sees %q, %q, %q", app, path, dates)
	}
}
