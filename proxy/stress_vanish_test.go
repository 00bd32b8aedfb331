package proxy

import (
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/pgtestproxy/pgtestproxy/internal/leasemode"
)

// vanishStep is how a stress client leaves: at which point of its session it drops its
// socket (with a reset, as a killed process does).
type vanishStep int

const (
	vanishAfterStartup vanishStep = iota // the startup packet sent, nothing read
	vanishAfterAuth                      // the first reply read
	vanishMidQuery                       // a long statement sent
	vanishMidBlock                       // inside a transaction block with a row inserted
	vanishMidCopy                        // in COPY FROM STDIN
	vanishPolitely                       // a full session ended with Terminate
	vanishSteps
)

func (v vanishStep) String() string {
	return [...]string{"after startup", "after auth", "mid-query", "mid-block", "mid-COPY", "politely"}[v]
}

// TestStressTxStartClientsVanish starts tx-mode leases while their clients vanish at
// every point of the start and of the session, with and without session keys, many
// clients at once. Every client that waits for its session must get it (or an
// error) before its socket deadline: a lease start that never finishes (issue 11
// item 4) fails the test instead of hanging. At the end no lease is left and a new
// client is served.
func TestStressTxStartClientsVanish(t *testing.T) {
	t.Parallel()
	p := newTestProvider(t)
	s := startProxy(t, Config{Provider: p, Logger: nopLogger()})
	workers, steps := 8, 30
	if n, err := strconv.Atoi(os.Getenv("PGTESTPROXY_STRESS_STEPS")); err == nil && n > 0 {
		steps = n
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	refused := map[string]int{} // by SQLSTATE
	for w := range workers {
		wg.Go(func() {
			for i := range steps {
				v := vanishStep((w + i) % int(vanishSteps))
				key := ""
				if i%3 == 0 {
					key = fmt.Sprintf("k%d", w%3) // workers share session keys
				}
				err := vanishingClient(s, v, key, 1000+w*100000+i)
				var se *serverError
				if errors.As(err, &se) { // refused in PostgreSQL's language: fine
					mu.Lock()
					refused[se.code]++
					mu.Unlock()
					continue
				}
				if err != nil {
					t.Errorf("worker %d step %d (%s, session %q): %v", w, i, v, key, err)
					return
				}
			}
		})
	}
	wg.Wait()
	t.Logf("%d clients, refused by SQLSTATE: %v", workers*steps, refused)
	waitFor(t, "every lease to end", func() bool { return p.liveCount() == 0 })
	c := connect(t, modeURL(s, leasemode.Tx, "app"))
	if got := currentDatabase(t, c); got == "" {
		t.Fatal("no database after the stress")
	}
}

// vanishingClient runs one client that leaves as v says. Its socket deadline is the
// hang guard: reaching it is the error.
func vanishingClient(s *Server, v vanishStep, key string, id int) error {
	c, err := net.DialTimeout("tcp", s.Addr().String(), 10*time.Second)
	if err != nil {
		return err
	}
	defer func() {
		if tc, ok := c.(*net.TCPConn); ok && v != vanishPolitely {
			_ = tc.SetLinger(0) // a reset, as when the process dies
		}
		_ = c.Close()
	}()
	_ = c.SetDeadline(time.Now().Add(45 * time.Second))
	params := map[string]string{"user": "stress", "database": "app", "mode": string(leasemode.Tx)}
	if key != "" {
		params["session"] = key
	}
	fe := pgproto3.NewFrontend(c, c)
	fe.Send(&pgproto3.StartupMessage{ProtocolVersion: pgproto3.ProtocolVersion30, Parameters: params})
	if err := fe.Flush(); err != nil {
		return fmt.Errorf("send startup: %w", err)
	}
	if v == vanishAfterStartup {
		return nil
	}
	if _, err := fe.Receive(); err != nil {
		return fmt.Errorf("first reply: %w", err)
	}
	if v == vanishAfterAuth {
		return nil
	}
	if err := untilReady(fe); err != nil {
		return fmt.Errorf("start-up: %w", err)
	}
	switch v {
	case vanishMidQuery:
		fe.Send(&pgproto3.Query{String: "SELECT pg_sleep(30)"})
		return fe.Flush()
	case vanishMidBlock:
		fe.Send(&pgproto3.Query{String: fmt.Sprintf("BEGIN; INSERT INTO items VALUES (%d, 'vanish')", id)})
		if err := fe.Flush(); err != nil {
			return err
		}
		return untilReady(fe)
	case vanishMidCopy:
		fe.Send(&pgproto3.Query{String: "COPY items FROM STDIN"})
		fe.Send(&pgproto3.CopyData{Data: fmt.Appendf(nil, "%d\tcopy\n", id)})
		return fe.Flush()
	}
	fe.Send(&pgproto3.Query{String: "SELECT count(*) FROM items"})
	if err := fe.Flush(); err != nil {
		return err
	}
	if err := untilReady(fe); err != nil {
		return err
	}
	fe.Send(&pgproto3.Terminate{})
	return fe.Flush()
}

// untilReady reads until ReadyForQuery; an ErrorResponse before it is the error.
func untilReady(fe *pgproto3.Frontend) error {
	var first error
	for {
		msg, err := fe.Receive()
		if err != nil {
			return err
		}
		switch m := msg.(type) {
		case *pgproto3.ErrorResponse:
			if first == nil {
				first = &serverError{code: m.Code, msg: m.Severity + ": " + m.Message}
			}
			if m.Severity == "FATAL" {
				return first
			}
		case *pgproto3.ReadyForQuery:
			return first
		}
	}
}

// serverError is an ErrorResponse a stress client got.
type serverError struct{ code, msg string }

func (e *serverError) Error() string { return e.code + " " + e.msg }
