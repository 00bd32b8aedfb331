package proxy

import (
	"fmt"
	"maps"
	"slices"
	"strings"
)

// clientParams is what a client's startup parameters ask of the proxy.
type clientParams struct {
	user     string
	database string
	mode     Mode
	session  string // session key; empty means a lease of its own
	// runtime holds the parameters passed to the upstream connection: everything the
	// client sent except user, database, the proxy's own settings and protocol options.
	runtime map[string]string
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
func parseParams(params map[string]string, defaultMode Mode) (*clientParams, error) {
	p := &clientParams{runtime: map[string]string{}, mode: defaultMode}
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
				p.runtime["options"] = rest
			}
		case strings.HasPrefix(k, "_pq_."):
			p.protocolOptions = append(p.protocolOptions, k)
		case k == paramMode || k == paramSession:
		default:
			p.runtime[k] = v
		}
	}
	if p.database == "" {
		p.database = p.user // as PostgreSQL does
	}
	if err := p.apply(settings, params); err != nil {
		return nil, err
	}
	return p, nil
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
			return &pgError{code: codeInvalidParameter,
				message: fmt.Sprintf("unrecognized option %q", name),
				hint:    "pgtestproxy options are pgtestproxy.mode (db or tx) and pgtestproxy.session (a key)."}
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
	m := Mode(strings.ToLower(strings.TrimSpace(value)))
	if !m.valid() {
		return newPgError(codeInvalidParameter,
			fmt.Sprintf("invalid value %q for option %s: allowed values are db and tx", value, option))
	}
	p.mode = m
	return nil
}
