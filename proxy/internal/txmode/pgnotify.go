package txmode

import (
	"encoding/binary"

	"github.com/pgtestproxy/pgtestproxy/internal/sqllex"
)

// pg_notify(). The proxy cannot see into function calls, but a client statement that
// is a call of pg_notify and nothing else (sqllex.PgNotify: SELECT
// [pg_catalog.]pg_notify(channel, payload), each argument a string constant or a
// parameter) is noted as the NOTIFY it amounts to, and delivered as NOTIFY is: when its
// unit or block commits in the client's view. Its arguments are the constants, or the
// parameters of the Bind that runs it. A call inside any other statement (with other
// columns, a FROM, an expression for an argument), in a function, DO block, trigger or
// rule is not delivered.

// pgNotifyOp returns the NOTIFY a statement that calls pg_notify with constants makes.
func pgNotifyOp(st *sqllex.Statement) *chanOp {
	call, ok := pgNotifyCall(st)
	if !ok || call.ChannelParam != 0 || call.PayloadParam != 0 {
		return nil
	}
	return &chanOp{kind: sqllex.Notify, channel: call.Channel, payload: call.Payload}
}

// pgNotifyParams returns the call of a statement that calls pg_notify with parameters.
func pgNotifyParams(st *sqllex.Statement) *sqllex.PgNotifyCall {
	call, ok := pgNotifyCall(st)
	if !ok || call.ChannelParam == 0 && call.PayloadParam == 0 {
		return nil
	}
	return &call
}

func pgNotifyCall(st *sqllex.Statement) (sqllex.PgNotifyCall, bool) {
	if st.Kind != sqllex.Other {
		return sqllex.PgNotifyCall{}, false
	}
	return sqllex.PgNotify(st.Text)
}

// bindNotify returns the NOTIFY the call makes with the parameters of a Bind (its body
// after the portal and statement names). A NULL or missing parameter is "": the
// server refuses an empty channel, and takes a NULL payload as empty.
func bindNotify(call *sqllex.PgNotifyCall, rest []byte) *chanOp {
	params := bindParams(rest)
	arg := func(lit string, n int) string {
		switch {
		case n == 0:
			return lit
		case n <= len(params):
			return string(params[n-1])
		}
		return ""
	}
	return &chanOp{kind: sqllex.Notify, channel: arg(call.Channel, call.ChannelParam), payload: arg(call.Payload, call.PayloadParam)}
}

// bindParams returns the parameter values of a Bind's body after its names (nil for a
// NULL); a malformed body has none. The text of a text value is the same in either
// format.
func bindParams(b []byte) [][]byte {
	u16 := func() (int, bool) {
		if len(b) < 2 {
			return 0, false
		}
		n := int(binary.BigEndian.Uint16(b))
		b = b[2:]
		return n, true
	}
	formats, ok := u16()
	if !ok || len(b) < 2*formats {
		return nil
	}
	b = b[2*formats:]
	n, ok := u16()
	if !ok {
		return nil
	}
	params := make([][]byte, 0, n)
	for range n {
		if len(b) < 4 {
			return nil
		}
		l := int32(binary.BigEndian.Uint32(b))
		b = b[4:]
		if l < 0 {
			params = append(params, nil)
			continue
		}
		if int(l) > len(b) {
			return nil
		}
		params = append(params, b[:l])
		b = b[l:]
	}
	return params
}
