package txmode

import (
	"bufio"
	"context"
	"maps"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/pgtestproxy/pgtestproxy/proxy/internal/wire"
)

// Backend is the backend connection of a tx-mode lease: taken over from pgconn,
// inside the proxy's transaction while the lease lasts, and kept with the clone
// between leases so that the next lease does not start a backend.
type Backend struct {
	conn    net.Conn
	rd      *wireReader
	wr      *bufio.Writer // writes to out, which writes to conn
	out     *sentCounter
	pmu     sync.Mutex
	params  map[string]string // the server's ParameterStatus values, kept current; under pmu
	base    map[string]string // the kept settings as the lease began (ownsettings.go); under pmu
	path    backendPath       // its search_path (ownpath.go); under pmu
	runtime map[string]string // the startup parameters it was opened with
	cancel  *wire.CancelTarget
	// watchConfig reaches the clone for watching the backend's activity (watch.go).
	watchConfig *pgconn.Config
	major       int    // the server's major version
	restore     string // the statement that restores the clone's sequences; "" when it has none
	snapped     bool   // restore was taken
	// tplDeferrable: the clone, as the template left it, has deferrable constraints or
	// constraint triggers; deferrable: the lease's transaction may have some now (set
	// when a client's statement may have created one, and learned again, with
	// sqlHasDeferrable, at the end of the next autocommit unit: relearn). Autocommit
	// units check their deferred constraints only then (rewrite.go, sqlCheckDeferred).
	tplDeferrable bool
	deferrable    atomic.Bool
	relearn       bool        // under mu
	defaultRO     atomic.Bool // the session's default_transaction_read_only is on (readonly.go)
	// untouched: nothing of a client's ran in the lease's transaction yet; iso: the
	// isolation level it was begun again with (isolation.go).
	untouched atomic.Bool
	iso       atomic.Uint32
	// routineLocals: the settings routines created in the lease may set locally
	// (locals.go); under mu.
	routineLocals    []string
	tplLocals        []string // what the template's routines may set locally (locals.go)
	hasRoutineLocals atomic.Bool
	// idleOwn: the client's idle_in_transaction_session_timeout may be other than 0,
	// so units are guarded (idle.go). idleStart: the last lease start learned so.
	idleOwn   atomic.Bool
	idleStart bool
	// ahead: the lease's start is written and its answer not read yet; held: the
	// start's bytes are all wr holds, unsent, while out has sent heldAt (startahead.go).
	// held and heldAt are under the txConn's wmu.
	ahead  *startAhead
	held   int
	heldAt int64

	st       txState // where the lease's transaction stands between sessions
	sessions int     // sessions that ran in the current lease

	mu sync.Mutex
	// leftover: a statement of the proxy's that may fail was sent, so its prepared
	// statement may be left on the server until the next unit closes it (send.go).
	leftover atomic.Bool

	closeOnce sync.Once

	// settings are the settings runtime makes; defaults the server's values of some of
	// them for a connection without them (startdefaults.go).
	settings [][2]string
	defaults map[string]string
	// deadlockTimeout is the server's deadlock_timeout when the backend first opened
	// the clone (deadlock.go).
	deadlockTimeout time.Duration
}

// noteDDL records a statement that may create or drop a deferrable constraint.
func (b *Backend) noteDDL() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.deferrable.Store(true)
	b.relearn = true
}

// takeRelearn reports whether DDL was noted since the last sqlHasDeferrable was sent,
// for one to be sent now.
func (b *Backend) takeRelearn() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	r := b.relearn
	b.relearn = false
	return r
}

// learned records what sqlHasDeferrable answered, unless DDL noted since it was sent
// makes the answer stale.
func (b *Backend) learned(has bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.relearn {
		b.deferrable.Store(has)
	}
}

// openTxBackend connects to the lease's database with the client's startup parameters.
func openTxBackend(ctx context.Context, lease Clone, runtime map[string]string) (*Backend, error) {
	up, err := wire.ConnectUpstream(ctx, lease, runtime)
	if err != nil {
		return nil, err
	}
	out := &sentCounter{w: up.Conn}
	b := &Backend{conn: up.Conn, rd: newWireReader(up.Conn), out: out, wr: bufio.NewWriterSize(out, txBufSize),
		params: up.Params, runtime: maps.Clone(runtime), cancel: up.Cancel,
		watchConfig: lease.ConnConfig()}
	if b.params == nil {
		b.params = map[string]string{}
	}
	b.noteReadOnly("default_transaction_read_only", b.params["default_transaction_read_only"])
	v := b.params["server_version"]
	b.major, _ = strconv.Atoi(v[:len(v)-len(strings.TrimLeft(v, "0123456789"))])
	return b, nil
}

// run sends the queries as simple-protocol Query messages in one write and reads their
// replies, passing data rows (as text) to row. It returns the last ReadyForQuery's
// status and the first error the server reported.
func (b *Backend) run(ctx context.Context, queries []string, row func(q int, vals []string)) (status byte, err error) {
	defer func() {
		if err != nil && ctx.Err() != nil && b.cancel != nil { // the step ran out of time: stop what the server still runs
			cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), wire.CancelTimeout)
			_ = b.cancel.Send(cctx)
			cancel()
		}
	}()
	if dl, ok := ctx.Deadline(); ok {
		_ = b.conn.SetDeadline(dl)
		defer func() { _ = b.conn.SetDeadline(time.Time{}) }()
	}
	var scratch []byte
	for _, q := range queries {
		if err := writeMsg(b.wr, &scratch, &pgproto3.Query{String: q}); err != nil {
			return 0, err
		}
	}
	if err := b.wr.Flush(); err != nil {
		return 0, err
	}
	if err := b.awaitStart(); err != nil { // written before queries, so answered first
		return 0, err
	}
	var first error
	for done := 0; done < len(queries); {
		typ, n, err := b.rd.header()
		if err != nil {
			return 0, err
		}
		body, err := b.rd.body(typ, n)
		if err != nil {
			return 0, err
		}
		switch typ {
		case 'E':
			var e pgproto3.ErrorResponse
			if e.Decode(body) == nil && first == nil {
				first = &pgconn.PgError{Severity: e.Severity, Code: e.Code, Message: e.Message, Detail: e.Detail}
			}
			if e.Severity == "FATAL" || e.Severity == "PANIC" {
				return 0, first
			}
		case 'S':
			b.noteParam(body)
		case 'D':
			if row != nil {
				row(done, dataRow(body))
			}
		case 'Z':
			status = body[0]
			done++
		}
	}
	return status, first
}

func dataRow(body []byte) []string {
	var d pgproto3.DataRow
	if d.Decode(body) != nil {
		return nil
	}
	vals := make([]string, len(d.Values))
	for i, v := range d.Values {
		vals[i] = string(v)
	}
	return vals
}

// noteParam records a ParameterStatus body.
func (b *Backend) noteParam(body []byte) {
	name, rest, ok1 := cstring(body)
	value, _, ok2 := cstring(rest)
	if ok1 && ok2 {
		b.pmu.Lock()
		b.params[name] = value
		b.pmu.Unlock()
		b.noteReadOnly(name, value)
	}
}

// greet completes a client's start-up on the backend: its parameters, the key the
// proxy issued for cancel requests, and ReadyForQuery.
func (b *Backend) greet(out *wire.MsgBuffer, key wire.BackendKey, s *Session) {
	b.pmu.Lock()
	params := maps.Clone(b.params)
	b.pmu.Unlock()
	wire.Greet(out, s.greetParams(params), key, 'I')
}

// Close ends the backend connection (politely, with Terminate). It is what the pool
// calls on a kept backend it does not hand out again.
func (b *Backend) Close() error {
	b.closeOnce.Do(func() {
		_ = b.conn.SetWriteDeadline(time.Now().Add(wire.GoodbyeWriteTimeout))
		_ = writeMsg(b.wr, new([]byte), &pgproto3.Terminate{})
		_ = b.wr.Flush()
		_ = b.conn.Close()
	})
	return nil
}
