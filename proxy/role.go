package proxy

import (
	"errors"
	"maps"
	"slices"
	"sync"

	"github.com/jackc/pgerrcode"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgtestproxy/pgtestproxy/proxy/internal/txmode"
)

// maxUnknownRoles bounds the names roles remembers, which clients choose.
const maxUnknownRoles = 1024

// paramRole is the setting that makes the upstream session run as the client's role.
const paramRole = "role"

// roles decides which role a client's session runs as (README, "Roles"). A client
// that names a role of the upstream other than the proxy's runs as it: the upstream
// connection's startup sets role to the client's user, which is then the session's
// reset value, so RESET ROLE, RESET ALL and DISCARD ALL keep it as they keep a plain
// server's login role. A name the upstream does not know runs as the proxy's own
// role, as the README's URLs (any user name) expect; the names the upstream refused
// are remembered, so only the first connection with one pays a second connect.
type roles struct {
	mu      sync.Mutex
	unknown map[string]bool // user names the upstream said are no role
}

// startupAs is what the upstream connection gets for a client whose upstream logs in
// as upstreamUser. A client that sets role itself keeps its own setting.
func (r *roles) startupAs(p *clientParams, upstreamUser string) txmode.Startup {
	st := p.startup
	if p.user == upstreamUser || r.isUnknown(p.user) ||
		slices.ContainsFunc(st.Settings, func(kv [2]string) bool { return kv[0] == paramRole }) {
		return st
	}
	st.Runtime = maps.Clone(st.Runtime)
	st.Runtime[paramRole] = p.user
	st.Settings = append(slices.Clone(st.Settings), [2]string{paramRole, p.user})
	return st
}

func (r *roles) isUnknown(user string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.unknown[user]
}

// refused reports whether err is the upstream's refusal of the role startupAs set for
// user because no such role exists; it then remembers the name, so that the caller's
// retry (and every later connection) runs as the proxy's role.
func (r *roles) refused(err error, user string) bool {
	var pg *pgconn.PgError
	if !errors.As(err, &pg) || pg.Code != pgerrcode.InvalidParameterValue || pg.Message != `role "`+user+`" does not exist` {
		return false
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.unknown == nil {
		r.unknown = map[string]bool{}
	}
	if len(r.unknown) < maxUnknownRoles { // beyond, a name pays its retry every time
		r.unknown[user] = true
	}
	return true
}
