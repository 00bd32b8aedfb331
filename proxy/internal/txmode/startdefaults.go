package txmode

import (
	"context"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"
)

// RESET ALL, in a session reset for the next connection of a session key, gives the
// settings the values of the startup packet the backend was opened with: the first
// connection's. So each of those is set to the server's value for a connection without
// it (the role to none), and then the next connection's own startup settings. Those
// values are read once per backend and setting, on a connection of the proxy's own to
// the clone. (The client's own RESET ALL or RESET of such a setting still gives the
// first connection's value: the backend's reset values are its startup packet's.)

// ownSettings returns the settings that make the session st's: the server's defaults
// for the backend's startup settings (first: a setting such as DateStyle keeps parts
// of the value it is set over), then st's own startup settings.
func (b *Backend) ownSettings(ctx context.Context, st Startup) ([][2]string, error) {
	var names []string
	seen := map[string]bool{"role": true} // RESET ROLE's value is its own
	for _, kv := range b.settings {
		if name := strings.ToLower(kv[0]); !seen[name] {
			names = append(names, name)
			seen[name] = true
		}
	}
	var settings [][2]string
	if len(names) > 0 {
		defs, err := b.serverDefaults(ctx, names)
		if err != nil {
			return nil, err
		}
		for _, name := range names {
			settings = append(settings, [2]string{name, defs[name]})
		}
	}
	settings = append(settings, st.Settings...)
	if _, ok := st.Runtime["role"]; !ok && b.runtime["role"] != "" {
		settings = append(settings, [2]string{"role", "none"})
	}
	return settings, nil
}

// serverDefaults returns the values a connection to the clone that does not set them
// gets for the settings names (lower case); a placeholder such a connection does not
// have is "".
func (b *Backend) serverDefaults(ctx context.Context, names []string) (map[string]string, error) {
	if b.defaults == nil {
		b.defaults = map[string]string{}
	}
	var unknown []string
	for _, n := range names {
		if _, ok := b.defaults[n]; !ok {
			unknown = append(unknown, n)
		}
	}
	if len(unknown) > 0 {
		if err := b.readDefaults(ctx, unknown); err != nil {
			return nil, fmt.Errorf("read the server's defaults of %s: %w", strings.Join(unknown, ", "), err)
		}
	}
	return b.defaults, nil
}

func (b *Backend) readDefaults(ctx context.Context, names []string) error {
	conn, err := pgconn.ConnectConfig(ctx, b.watchConfig)
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	cols := make([]string, len(names))
	for i, n := range names {
		cols[i] = "pg_catalog.current_setting(" + quoteLiteral(n) + ", true)"
	}
	res, err := conn.Exec(ctx, "SELECT "+strings.Join(cols, ", ")).ReadAll()
	if err != nil {
		return err
	}
	if len(res) != 1 || len(res[0].Rows) != 1 || len(res[0].Rows[0]) != len(names) {
		return fmt.Errorf("unexpected result")
	}
	for i, n := range names {
		b.defaults[n] = string(res[0].Rows[0][i])
	}
	return nil
}
