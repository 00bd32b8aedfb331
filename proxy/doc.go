// Package proxy is pgtestproxy's front door: it speaks the PostgreSQL v3 wire protocol
// to clients and gives each one a leased database. It answers the startup phase itself
// (SSLRequest and GSSENCRequest, protocol version negotiation down to 3.0,
// CancelRequest, SCRAM-SHA-256 when a password is set), takes the proxy's own settings
// out of the startup packet (`-c pgtestproxy.mode=…`/`-c pgtestproxy.session=…` in
// `options`, the plain parameters `mode` and `session`, or the database name's
// NAME+MODE[+KEY] form; params.go parses all three, once), asks a LeaseProvider for a
// database (connections with the same template, mode and session key share one lease,
// which lingers briefly after its last connection), connects to it with pgconn and the
// client's other runtime parameters, and then relays bytes both ways without decoding
// them. Before the startup packet it answers as PostgreSQL 15's ProcessStartupPacket
// does (startup.go): a silent close where the server only logs, its FATAL otherwise. Its BackendKeyData carries the real backend's process ID with a secret of its
// own (the cancel registry is keyed by both: connections sharing a tx-mode backend share
// its PID), and it forwards cancel requests to the real backend. A shared lease that is
// lost (its tx-mode backend ended) is forgotten by routing at once: the key's next
// connection gets a fresh lease, and the lost one is released unclean when its last
// connection is gone. The database name "pgtestproxy" is an admin console answering SHOW
// statements, GC and RELOAD over the simple and the extended protocol (admin*.go); what
// the pool knows it asks of Config.Admin, what only the proxy knows (session keys,
// connections and client addresses of its leases: leasebook.go) it adds itself.
// Counters (Stats) are atomics the sessions add to, read by SHOW STATS and by the
// Prometheus collector in cmd/pgtestproxy: one source. The proxy never imports the pool: what it needs is the LeaseProvider
// interface declared here.
//
// Lease modes: the mode is decided once, when the startup packet is parsed, and the
// session goes to that mode's runner, which leases through a router of its own. In db
// mode the session is a byte relay (relay.go). In tx mode the lease is a clone and one
// backend connection inside a transaction of the proxy's, and the session decodes and
// rewrites what it must so that every client sees an ordinary autocommit session;
// package proxy/internal/txmode owns it and describes how. Connections that share a
// tx-mode session key are multiplexed onto the lease's one backend and transaction.
// What the relay, the console, authentication, startup and tx mode share on the wire
// is package proxy/internal/wire. README's "How it works" and "Choosing the mode" say
// what each mode promises.
//
// Errors: every SQLSTATE the proxy sends is a github.com/jackc/pgerrcode code carried
// by an internal/pgerr error; a provider's or the server's error keeps its own code,
// message, detail and hint. A panic in any goroutine that touches a client's bytes
// ends only that session (in tx mode, every session of its lease) with FATAL XX000
// "internal error in pgtestproxy", is logged once with its stack and counted in
// Stats.Panics (the SHOW STATS panics column).
//
// Log fields have one meaning each, here and in cmd/pgtestproxy:
//
//	database     the template part of the client's database name (it selects the template)
//	template     a template's name, as given to --migrations (pool)
//	template_db  a template's database on the upstream (pool)
//	clone        a clone's database name on the upstream
//	session_key  the client's session key (pgtestproxy.session); empty: none
//	client       the client's address
//	mode         the lease mode, db or tx
//	cause        why a session or connection ended
//
// Choices the README leaves open: a setting given both as a plain parameter and in
// `options` takes the plain parameter's value (PostgreSQL applies startup parameters
// after `options`); settings in the database name must agree with those given either
// other way (22023 otherwise), and NAME+db is accepted beside the NAME+tx form; the
// upstream connection logs in as the proxy's own role and, when the client names
// another role the upstream has, sets role to it in its startup (role.go; a name the
// upstream does not know runs as the proxy's role, README "Roles"); admin console
// sessions count towards MaxSessions;
// SHOW HELP lists the console's commands as a result set and anything else is an
// ERROR whose hint lists them; new clients during shutdown get 57P01, and sessions cut
// at the end of the grace period get a FATAL 57P01 when the server's byte stream is
// between messages (otherwise the socket is closed).
package proxy
