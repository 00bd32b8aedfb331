package txmode

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
)

// What every unit runs allocates nothing per message: the savepoint statements that
// open it (openUnit), the replies streamed on to the client (copyTo), the check of each
// message's outcome for a deadlock (asDeadlock).
func TestPerMessageNoAllocation(t *testing.T) {
	c := &txClient{cn: &txConn{be: &Backend{wr: bufio.NewWriter(io.Discard)}}, s: &Session{}, msgType: 'Q'}
	open := []planStmt{{sql: sqlRelease, role: roleInfra}, {sql: sqlSavepoint, role: roleInfra, ok: effSavepoint}}
	if n := testing.AllocsPerRun(100, func() {
		if err := c.openUnit(open); err != nil {
			t.Fatal(err)
		}
		for c.cn.q.len() > 0 {
			c.cn.q.pop()
		}
	}); n != 0 {
		t.Errorf("openUnit: %.0f allocations", n)
	}

	body := strings.Repeat("x", 100)
	src := strings.NewReader("")
	rd := newWireReader(src)
	var dst bytes.Buffer
	dst.Grow(1 << 10)
	if n := testing.AllocsPerRun(100, func() {
		src.Reset(body)
		rd.r.Reset(src)
		dst.Reset()
		if _, err := rd.copyTo(&dst, len(body)); err != nil {
			t.Fatal(err)
		}
	}); n != 0 {
		t.Errorf("copyTo: %.0f allocations", n)
	}
	if dst.String() != body {
		t.Errorf("copyTo copied %q", dst.String())
	}
	src.Reset(body[:10])
	rd.r.Reset(src)
	if _, err := rd.copyTo(&dst, len(body)); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("copyTo of a body cut short: %v, want io.ErrUnexpectedEOF", err)
	}

	if n := testing.AllocsPerRun(100, func() { _, _ = asDeadlock(nil) }); n != 0 {
		t.Errorf("asDeadlock(nil): %.0f allocations", n)
	}
}
