package proxy

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/jackc/pgerrcode"
	"go.uber.org/zap"

	"github.com/pgtestproxy/pgtestproxy/internal/leasemode"
	"github.com/pgtestproxy/pgtestproxy/internal/pgerr"
	"github.com/pgtestproxy/pgtestproxy/proxy/internal/txmode"
)

// clientParams is what a client's startup parameters ask of the proxy.
type clientParams struct {
	user     string
	database string
	mode     leasemode.Mode
	session  string // session key; empty means a lease of its own
	// startup is what the upstream connection gets: the runtime parameters (everything
	// the client sent except user, database, the proxy's own settings and protocol
	// options) and the settings they make.
	startup txmode.Startup
	// protocolOptions are the _pq_.* options the client asked for; the proxy supports
	// none and says so with NegotiateProtocolVersion.
	protocolOptions []string
}

// Plain startup parameters the proxy takes for itself (what pgx and asyncpg send for
// unknown DSN query parameters). They never reach the upstream.
const (
	paramMode    = "mode"
	paramSession = "session"
)

// parseParams reads a startup packet's parameters. A setting given both as a plain
// parameter and in `options` takes the plain parameter's value, as PostgreSQL applies
// startup parameters after `options`.
func parseParams(params map[string]string, defaultMode leasemode.Mode) (*clientParams, error) {
	runtime := map[string]string{}
	p := &clientParams{mode: defaultMode}
	settings := map[string]string{}
	for _, k := range slices.Sorted(maps.Keys(params)) {
		v := params[k]
		switch {
		case k == "user":
			p.user = v
		case k == "database":
			p.database = v
		case k == "options":
			opts, rest, err := extractProxyOptions(v)
			if err != nil {
				return nil, err
			}
			for name, val := range opts {
				settings[name] = val
			}
			if rest != "" {
				runtime["options"] = rest
			}
		case strings.HasPrefix(k, "_pq_."):
			p.protocolOptions = append(p.protocolOptions, k)
		case k == paramMode || k == paramSession:
		default:
			runtime[k] = v
		}
	}
	if p.database == "" {
		p.database = p.user // as PostgreSQL does
	}
	name, err := parseDatabaseName(p.database)
	if err != nil {
		return nil, err
	}
	p.database = name.template
	if err := p.apply(settings, params); err != nil {
		return nil, err
	}
	if err := p.applyName(name, settings, params); err != nil {
		return nil, err
	}
	p.startup = txmode.Startup{Runtime: runtime, Settings: runtimeSettings(runtime)}
	return p, nil
}

// nameSep separates the template, the mode and the session key in a database name
// (README, "Choosing the mode"): app, app+tx, app+db+KEY, app+tx+KEY.
const nameSep = "+"

// databaseName is a database name taken apart: the template it selects and the
// settings it carries (empty when it carries none).
type databaseName struct {
	raw      string // the name as the client sent it
	template string
	mode     leasemode.Mode
	session  string
}

// parseDatabaseName takes a database name apart. A name without nameSep selects a
// template and sets nothing; with it, the name must be one of the allowed forms.
func parseDatabaseName(database string) (databaseName, error) {
	parts := strings.Split(database, nameSep)
	if len(parts) == 1 {
		return databaseName{template: database}, nil
	}
	n := databaseName{raw: database, template: parts[0], mode: leasemode.Mode(strings.ToLower(parts[1]))}
	if len(parts) == 3 {
		n.session = parts[2]
	}
	if n.template == "" || !n.mode.Valid() || len(parts) > 3 || (len(parts) == 3 && n.session == "") {
		return databaseName{}, &pgerr.Error{Code: pgerrcode.InvalidParameterValue,
			Message: fmt.Sprintf("invalid database name %q: allowed forms are NAME, NAME+tx, NAME+db, NAME+tx+KEY and NAME+db+KEY", database),
			Hint:    "The part after the first + is the mode (db or tx), the part after the second the session key; neither may be empty."}
	}
	return n, nil
}

// applyName takes the settings a database name carries. A setting given in options
// or as a plain parameter as well must agree with the name's.
func (p *clientParams) applyName(n databaseName, settings, params map[string]string) error {
	if n.mode != "" {
		p.mode = n.mode
	}
	if n.session != "" {
		p.session = n.session
	}
	mode := func(v string) string { return strings.ToLower(strings.TrimSpace(v)) }
	key := func(v string) string { return v }
	for _, c := range []struct {
		name, want string
		norm       func(string) string
	}{
		{paramMode, string(n.mode), mode},
		{paramSession, n.session, key},
	} {
		for _, src := range [...]struct {
			name  string
			given map[string]string
		}{{proxyOptionPrefix + c.name, settings}, {c.name, params}} {
			if v, ok := src.given[src.name]; ok && c.want != "" && c.norm(v) != c.want {
				return pgerr.New(pgerrcode.InvalidParameterValue, fmt.Sprintf(
					"%s %q disagrees with %q in the database name %q", src.name, v, c.want, n.raw))
			}
		}
	}
	return nil
}

// request is the lease the client asks for.
func (p *clientParams) request() LeaseRequest {
	return LeaseRequest{Database: p.database, Mode: p.mode, Session: p.session}
}

// logger returns log with the session's fields (see the package doc).
func (p *clientParams) logger(log *zap.Logger, cc *clientConn) *zap.Logger {
	return log.WithLazy(zap.String("database", p.database), zap.String("mode", string(p.mode)),
		zap.String("session_key", p.session), zap.Stringer("client", cc.raw.RemoteAddr()))
}

// runtimeSettings lists the settings a client's startup parameters make: the plain
// ones and the -c settings in options, in a stable order.
func runtimeSettings(runtime map[string]string) [][2]string {
	var out [][2]string
	for _, k := range slices.Sorted(maps.Keys(runtime)) {
		if k != "options" {
			out = append(out, [2]string{k, runtime[k]})
			continue
		}
		args := splitOptions(runtime[k])
		for i := 0; i < len(args); i++ {
			arg, n := settingArg(args, i)
			if name, value, ok := strings.Cut(arg, "="); n > 0 && ok {
				out = append(out, [2]string{strings.ReplaceAll(name, "-", "_"), value})
			}
			i += max(n, 1) - 1
		}
	}
	return out
}

// apply takes the pgtestproxy.* settings from options and the plain parameters.
func (p *clientParams) apply(settings, params map[string]string) error {
	for name, v := range settings {
		switch name {
		case proxyOptionPrefix + paramMode:
			if err := p.setMode(name, v); err != nil {
				return err
			}
		case proxyOptionPrefix + paramSession:
			p.session = v
		default:
			return &pgerr.Error{Code: pgerrcode.InvalidParameterValue,
				Message: fmt.Sprintf("unrecognized option %q", name),
				Hint:    "pgtestproxy options are pgtestproxy.mode (db or tx) and pgtestproxy.session (a key)."}
		}
	}
	if v, ok := params[paramMode]; ok {
		if err := p.setMode(paramMode, v); err != nil {
			return err
		}
	}
	if v, ok := params[paramSession]; ok {
		p.session = v
	}
	return nil
}

func (p *clientParams) setMode(option, value string) error {
	m := leasemode.Mode(strings.ToLower(strings.TrimSpace(value)))
	if !m.Valid() {
		return pgerr.New(pgerrcode.InvalidParameterValue,
			fmt.Sprintf("invalid value %q for option %s: allowed values are db and tx", value, option))
	}
	p.mode = m
	return nil
}
