package integration

import (
	be "encoding/binary"
	"errors"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// startupTimeout is the proxy's (proxy.DefaultStartupTimeout, not a flag);
// slowLorisBound is the correctness deadline for the proxy to close a client that has
// not finished its start-up: the timeout plus a generous margin for a loaded machine.
const (
	startupTimeout = 10 * time.Second
	slowLorisBound = startupTimeout + 30*time.Second
)

// TestStressSlowLoris opens PGTESTPROXY_STRESS_SESSIONS connections that never finish
// their start-up — half send nothing, half send a startup packet one byte every 200ms
// (it would take longer than the start-up timeout) — while the load runs. The proxy
// closes each of them without a word once the start-up timeout has passed (as
// PostgreSQL does at authentication_timeout; times printed), and the load's clients
// are served meanwhile without a single error (their p99 is printed).
func TestStressSlowLoris(t *testing.T) {
	t.Parallel()
	sessions := stressKnob(envStressSessions, 16)
	u := newStressUpstream(t, sessions+100)
	mig := migrationsDir(t)
	p := startProxyProc(t, u.url("postgres"), mig, stressCapacity(sessions)...)
	l := startLoad(t, p, min(sessions, 32))
	var wg sync.WaitGroup
	var mu sync.Mutex
	var closed []time.Duration
	var failures []string
	for i := range sessions {
		wg.Go(func() {
			took, err := slowLoris(p.addr, i%2 == 1)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				failures = append(failures, err.Error())
				return
			}
			closed = append(closed, took)
		})
	}
	wg.Wait()
	l.halt()
	slices.Sort(closed)
	if len(closed) > 0 {
		t.Logf("slow-loris: %d clients (half silent, half a byte every 200ms) closed by the proxy after %s..%s; "+
			"meanwhile %s", sessions, closed[0].Round(time.Millisecond), closed[len(closed)-1].Round(time.Millisecond), l.figures())
	}
	if len(failures) > 0 {
		t.Errorf("%d slow clients: %s", len(failures), strings.Join(failures[:min(5, len(failures))], "; "))
	}
	for _, d := range closed {
		if d < startupTimeout-time.Second {
			t.Errorf("a slow client was closed after %s, before the start-up timeout %s", d, startupTimeout)
			break
		}
	}
	if bad := l.unexpected(); len(bad) > 0 {
		t.Errorf("normal clients during the slow-loris: %s", strings.Join(bad, "; "))
	}
}

// slowLoris connects and sends (when trickle) a startup packet a byte every 200ms, or
// nothing, until the proxy closes the connection; it returns how long that took. The
// proxy must close without sending a byte, within slowLorisBound.
func slowLoris(addr string, trickle bool) (time.Duration, error) {
	c, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	start := time.Now()
	packet := startupPacket(map[string]string{"user": "loris", "database": "app",
		"application_name": strings.Repeat("x", 64)})
	buf := make([]byte, 64)
	for sent := 0; time.Since(start) < slowLorisBound; {
		if trickle && sent < len(packet)-1 { // never the last byte
			if _, err := c.Write(packet[sent : sent+1]); err != nil {
				return time.Since(start), nil // closed under our write
			}
			sent++
		}
		_ = c.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
		n, err := c.Read(buf)
		if n > 0 {
			return 0, errors.New("the proxy answered an unfinished start-up: " + string(buf[:n]))
		}
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			continue
		}
		return time.Since(start), nil // EOF or reset: closed
	}
	return 0, errors.New("not closed within " + slowLorisBound.String())
}

// startupPacket is a protocol 3.0 StartupMessage with params.
func startupPacket(params map[string]string) []byte {
	body := be.BigEndian.AppendUint32(nil, 3<<16)
	for k, v := range params {
		body = append(append(append(append(body, k...), 0), v...), 0)
	}
	body = append(body, 0)
	return append(be.BigEndian.AppendUint32(nil, uint32(len(body)+4)), body...)
}
