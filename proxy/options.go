package proxy

import (
	"fmt"
	"strings"

	"github.com/jackc/pgerrcode"

	"github.com/pgtestproxy/pgtestproxy/internal/pgerr"
)

// proxyOptionPrefix marks the options the proxy takes out of the `options` startup
// parameter instead of passing them on (README, "Choosing the mode").
const proxyOptionPrefix = "pgtestproxy."

// splitOptions splits the `options` startup parameter into arguments the way
// PostgreSQL's pg_split_opts does: arguments are separated by whitespace, and a
// backslash makes the next character (a space, another backslash) part of the
// argument. Empty arguments are dropped.
func splitOptions(s string) []string {
	var args []string
	var cur strings.Builder
	escaped := false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case escaped:
			cur.WriteByte(c)
			escaped = false
		case c == '\\':
			escaped = true
		case isOptionSpace(c):
			if cur.Len() > 0 {
				args = append(args, cur.String())
			}
			cur.Reset()
		default:
			cur.WriteByte(c)
		}
	}
	if cur.Len() > 0 {
		args = append(args, cur.String())
	}
	return args
}

// isOptionSpace matches C's isspace in the "C" locale, as pg_split_opts uses it.
func isOptionSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r'
}

// joinOptions is the inverse of splitOptions: it escapes backslashes and whitespace so
// that splitOptions(joinOptions(args)) == args for non-empty args.
func joinOptions(args []string) string {
	var b strings.Builder
	for i, a := range args {
		if i > 0 {
			b.WriteByte(' ')
		}
		for j := 0; j < len(a); j++ {
			if a[j] == '\\' || isOptionSpace(a[j]) {
				b.WriteByte('\\')
			}
			b.WriteByte(a[j])
		}
	}
	return b.String()
}

// extractProxyOptions takes the pgtestproxy.* settings (`-c pgtestproxy.k=v`,
// `-cpgtestproxy.k=v`, `--pgtestproxy.k=v`) out of an `options` value. It returns them
// by lower-case name and returns the remaining arguments re-joined, to be passed to
// the upstream. Everything that is not a pgtestproxy.* setting is kept as written.
func extractProxyOptions(options string) (settings map[string]string, rest string, err error) {
	args := splitOptions(options)
	kept := args[:0:0]
	for i := 0; i < len(args); i++ {
		arg, consumed := settingArg(args, i)
		name, value, hasValue := strings.Cut(arg, "=")
		// PostgreSQL's ParseLongOption turns '-' into '_' in the name; GUC names are
		// case-insensitive.
		name = strings.ToLower(strings.ReplaceAll(name, "-", "_"))
		if consumed == 0 || !strings.HasPrefix(name, proxyOptionPrefix) {
			n := max(consumed, 1)
			kept = append(kept, args[i:i+n]...)
			i += n - 1
			continue
		}
		if !hasValue {
			return nil, "", pgerr.New(pgerrcode.InvalidParameterValue,
				fmt.Sprintf("option %s requires a value (-c %s=VALUE)", name, name))
		}
		if settings == nil {
			settings = map[string]string{}
		}
		settings[name] = value
		i += consumed - 1
	}
	return settings, joinOptions(kept), nil
}

// settingArg recognises a setting at args[i] and returns its "name=value" text and how
// many arguments it spans (0 when args[i] is not a setting).
func settingArg(args []string, i int) (arg string, consumed int) {
	a := args[i]
	switch {
	case a == "-c":
		if i+1 < len(args) {
			return args[i+1], 2
		}
		return "", 0
	case strings.HasPrefix(a, "--"):
		return a[2:], 1
	case strings.HasPrefix(a, "-c"):
		return a[2:], 1
	}
	return "", 0
}
