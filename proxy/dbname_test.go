package proxy

import (
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/pgtestproxy/pgtestproxy/internal/leasemode"
	"github.com/pgtestproxy/pgtestproxy/internal/pgerr"
	"github.com/pgtestproxy/pgtestproxy/internal/testpg"
)

// The database name carries the mode and the session key for clients that can send
// neither options nor extra parameters: pgx, psql and a raw start-up all get the
// lease the name asks for.
func TestDatabaseNameSettings(t *testing.T) {
	t.Parallel()
	p := newTestProvider(t)
	s := startProxy(t, Config{Provider: p, Linger: time.Minute})

	a := connect(t, proxyURL(s, "app+tx+k1"))
	b := connect(t, proxyURL(s, "app+tx+k1"))
	if da, db := currentDatabase(t, a), currentDatabase(t, b); da != db {
		t.Errorf("app+tx+k1 twice got %s and %s, want one lease", da, db)
	}
	psql := testpg.Psql(t)
	out, err := exec.Command(psql, "-X", "-At", "-c", "SELECT current_database()", proxyURL(s, "app+db+k2")).CombinedOutput()
	if err != nil {
		t.Fatalf("psql app+db+k2: %v\n%s", err, out)
	}
	raw := startRaw(t, rawConn(t, s), "app+tx")
	raw.Send(&pgproto3.Terminate{})
	if err := raw.Flush(); err != nil {
		t.Fatal(err)
	}

	want := []LeaseRequest{{"app", leasemode.Tx, "k1"}, {"app", leasemode.DB, "k2"}, {"app", leasemode.Tx, ""}}
	p.mu.Lock()
	got := append([]LeaseRequest(nil), p.requests...)
	p.mu.Unlock()
	if len(got) != len(want) {
		t.Fatalf("provider saw requests %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("request %d = %+v, want %+v", i, got[i], want[i])
		}
	}
}

// A malformed name, or one that disagrees with the options, is refused with 22023
// naming the allowed forms — through pgx, psql and a raw start-up.
func TestDatabaseNameRefused(t *testing.T) {
	t.Parallel()
	p := newTestProvider(t)
	s := startProxy(t, Config{Provider: p})
	ctx := testContext(t)
	for _, db := range []string{"app+", "app+xx", "app+tx+", "app+tx+k+1"} {
		_, err := pgx.Connect(ctx, proxyURL(s, db))
		if e := wantSQLState(t, err, "22023"); !strings.Contains(e.Message, "NAME+tx+KEY") {
			t.Errorf("%s: message %q does not name the allowed forms", db, e.Message)
		}
	}
	_, err := pgx.Connect(ctx, proxyURL(s, "app+tx", "mode=db"))
	wantSQLState(t, err, "22023")

	psql := testpg.Psql(t)
	out, err := exec.Command(psql, "-X", "-At", "-c", "SELECT 1", proxyURL(s, "app+tx",
		"options=-c%20pgtestproxy.mode%3Ddb")).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "disagrees") {
		t.Errorf("psql with app+tx and mode=db in options: %v\n%s", err, out)
	}

	c := rawConn(t, s)
	if _, err := c.Write(encode(t, &pgproto3.StartupMessage{ProtocolVersion: pgproto3.ProtocolVersion30,
		Parameters: map[string]string{"user": "raw", "database": "app+fast"}})); err != nil {
		t.Fatal(err)
	}
	if e := readFatal(t, c); e.Code != "22023" || e.Severity != "FATAL" {
		t.Errorf("raw start-up with app+fast: %s %s %s", e.Severity, e.Code, e.Message)
	}
	if n := p.acquired(); n != 0 {
		t.Errorf("refused names reached the provider %d times", n)
	}
}

// FuzzDatabaseName: any name parses or is refused with 22023; what parses selects a
// template without '+', and a name with '+' always sets a valid mode.
func FuzzDatabaseName(f *testing.F) {
	for _, s := range []string{"app", "app+tx", "app+db+k", "app+", "+tx", "a+TX+b+c", "++", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, err := parseDatabaseName(s)
		if err != nil {
			if code := pgerr.SQLState(err); code != "22023" {
				t.Fatalf("%q refused with %s: %v", s, code, err)
			}
			return
		}
		if strings.Contains(n.template, nameSep) || (strings.Contains(s, nameSep) && !n.mode.Valid()) {
			t.Fatalf("%q parsed as %+v", s, n)
		}
	})
}
