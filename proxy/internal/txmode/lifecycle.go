package txmode

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
)

// timeoutsOff turns off the server timeouts that would end the proxy's long
// transaction: idle_in_transaction_session_timeout, whose client value is kept for
// it (idle.go), and transaction_timeout (17+).
func (b *Backend) timeoutsOff() string {
	return b.txTimeoutOff() + sqlIdleStart
}

// txTimeoutOff turns off transaction_timeout (17+), before the transaction begins.
func (b *Backend) txTimeoutOff() string {
	if b.major >= 17 {
		return "SET transaction_timeout = 0;"
	}
	return ""
}

// start begins the lease's transaction and sets the proxy's savepoint; on the
// clone's first lease in this backend it also takes the sequences' values.
func (b *Backend) start(ctx context.Context) error {
	// READ WRITE: a client's default_transaction_read_only applies to its own
	// transactions (readonly.go), never to the proxy's.
	// sqlIdleStart runs in the transaction: a SELECT before BEGIN READ WRITE would
	// take a snapshot under a read-only default.
	queries := []string{b.txTimeoutOff() + "BEGIN READ WRITE;" + sqlIdleStart + ";" + sqlSavepoint}
	if !b.snapped {
		// The proxy's own role reads every sequence, whatever the client's role may.
		queries[0] += b.asProxy()
		queries = append(queries, `SELECT pg_catalog.format('%I.%I', schemaname, sequencename),
			coalesce(last_value, start_value), last_value IS NOT NULL FROM pg_catalog.pg_sequences`,
			sqlHasDeferrable, sqlDeadlockTimeout, sqlTemplateLocals)
		if b.runtime["role"] != "" {
			queries = append(queries, "RESET ROLE")
		}
	}
	var seqs [][]string
	tplDeferrable := false
	idle := ""
	status, err := b.run(ctx, queries, func(q int, row []string) {
		switch q {
		case 0:
			if len(row) > 0 && idle == "" {
				idle = row[0]
			}
			return
		case 2:
			tplDeferrable = len(row) == 1 && row[0] == "t"
			return
		case 3:
			b.deadlockTimeout = parseDeadlockTimeout(row)
			return
		case 4:
			if len(row) == 1 {
				b.tplLocals = bodyLocals(row[0])
			}
			return
		}
		seqs = append(seqs, row)
	})
	if err != nil {
		return fmt.Errorf("begin the lease's transaction: %w", err)
	}
	if status != 'T' {
		return fmt.Errorf("begin the lease's transaction: status %q", status)
	}
	if !b.snapped {
		b.restore, b.snapped, b.tplDeferrable = restoreSequences(seqs), true, tplDeferrable
	}
	b.idleStart = idle != "0"
	b.idleOwn.Store(b.idleStart)
	b.begun()
	return nil
}

// begun sets the state of a lease's transaction just begun.
func (b *Backend) begun() {
	b.deferrable.Store(b.tplDeferrable)
	b.relearn = false
	b.untouched.Store(true)
	b.iso.Store(0)
	b.mu.Lock()
	b.routineLocals = slices.Clone(b.tplLocals) // the lease's rollback drops its own routines
	b.mu.Unlock()
	b.hasRoutineLocals.Store(len(b.tplLocals) > 0)
	b.st, b.sessions = txState{sp: spClean, status: 'T'}, 0
}

// asProxy is what switches the backend from the client's role (a startup role
// parameter, see the proxy's roles) to the one it logged in as, until RESET ROLE.
func (b *Backend) asProxy() string {
	if b.runtime["role"] == "" {
		return ""
	}
	return ";SET ROLE NONE;"
}

// restoreSequences builds the statement that sets every sequence back to its value
// and is_called flag in rows (name, value, called).
func restoreSequences(rows [][]string) string {
	if len(rows) == 0 {
		return ""
	}
	var b strings.Builder
	b.WriteString("SELECT pg_catalog.setval(v.seq::pg_catalog.regclass, v.val, v.called) FROM (VALUES ")
	for i, r := range rows {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "(%s, %s::int8, %s::bool)", quoteLiteral(r[0]), quoteLiteral(r[1]), quoteLiteral(r[2]))
	}
	b.WriteString(") AS v(seq, val, called)")
	return b.String()
}

// finish ends the lease on the backend: it rolls the proxy's transaction back,
// restores the sequences and resets the session, so that the backend and the clone are
// as the template left them.
func (b *Backend) finish(ctx context.Context) error {
	queries := []string{"ROLLBACK"}
	if b.restore != "" {
		if b.readOnlyDefault() {
			// A query string of its own: a transaction's mode is set at its start.
			queries = append(queries, "SET default_transaction_read_only = off") // DISCARD ALL resets it
		}
		queries = append(queries, b.asProxy()+b.restore) // DISCARD ALL then resets the role
	}
	// The settings the next lease's transaction needs (its timeouts off, the client's
	// idle timeout learned), which DISCARD ALL reset, are set here, so that a kept
	// backend's next start is BEGIN and SAVEPOINT alone (startLater).
	queries = append(queries, "DISCARD ALL", b.txTimeoutOff()+sqlIdleStart)
	idle := ""
	status, err := b.run(ctx, queries, func(q int, row []string) {
		if q == len(queries)-1 && len(row) > 0 && idle == "" {
			idle = row[0]
		}
	})
	if err == nil && status != 'I' {
		err = fmt.Errorf("status %q", status)
	}
	if err != nil {
		return fmt.Errorf("reset the clone at lease end: %w", err)
	}
	b.idleStart = idle != "0"
	return nil
}

// resetSession prepares the lease's backend for another connection with the same
// session key: the work of the connections before stays, but what a plain server keeps
// per connection goes (an open transaction block, cursors, prepared statements,
// advisory locks, temporary tables, settings), and the new client's startup parameters
// apply. A parameter the server refuses refuses the client (a *clientRefusal) and
// leaves the session as it was.
func (b *Backend) resetSession(ctx context.Context, st Startup) error {
	var q strings.Builder
	switch {
	case b.st.block:
		q.WriteString(sqlRollbackTo + ";")
	case b.st.sp == spNone:
		q.WriteString(sqlSavepoint + ";")
	}
	// SET SESSION AUTHORIZATION DEFAULT and RESET ROLE, which RESET ALL leaves alone,
	// give the role the backend logged in with (its startup role parameter, if any).
	q.WriteString("CLOSE ALL;DEALLOCATE ALL;DISCARD TEMP;SELECT pg_catalog.pg_advisory_unlock_all();" +
		"SET SESSION AUTHORIZATION DEFAULT;RESET ROLE;RESET ALL;")
	q.WriteString(b.timeoutsOff() + ";" + sqlRelease + ";" + sqlSavepoint)
	if err := b.runT(ctx, q.String()); err != nil {
		return fmt.Errorf("reset the tx session for a new connection: %w", err)
	}
	b.st = txState{sp: spClean, status: 'T'}
	b.untouched.Store(false)
	if maps.Equal(st.Runtime, b.runtime) {
		return nil
	}
	q.Reset()
	settings, err := b.ownSettings(ctx, st)
	if err != nil {
		return &clientRefusal{err: err}
	}
	for i, kv := range settings {
		if i > 0 {
			q.WriteByte(';')
		}
		fmt.Fprintf(&q, "SELECT pg_catalog.set_config(%s, %s, false)", quoteLiteral(kv[0]), quoteLiteral(kv[1]))
		if strings.EqualFold(kv[0], idleName) {
			b.idleOwn.Store(true)
		}
	}
	if q.Len() > 0 && b.idleOwn.Load() {
		// The connection's own value, guarded afresh.
		q.WriteString(";SELECT pg_catalog.set_config('" + spIdle + "', '', false);" + sqlIdleGuard)
	}
	if q.Len() == 0 {
		return nil
	}
	if err := b.runT(ctx, q.String()); err != nil {
		if rerr := b.runT(ctx, sqlRollbackTo); rerr != nil {
			return fmt.Errorf("undo startup parameters: %w", rerr)
		}
		return &clientRefusal{err: err}
	}
	b.st.sp = spDirty
	return nil
}

// runT runs one query that must leave the proxy's transaction in good order.
func (b *Backend) runT(ctx context.Context, q string) error {
	status, err := b.run(ctx, []string{q}, nil)
	if err == nil && status != 'T' {
		err = fmt.Errorf("status %q", status)
	}
	return err
}

// clientRefusal is an error that refuses one client without harming its lease.
type clientRefusal struct{ err error }

func (e *clientRefusal) Error() string { return e.err.Error() }
func (e *clientRefusal) Unwrap() error { return e.err }
