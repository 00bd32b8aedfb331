package proxy

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net"
	"net/url"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgtestproxy/pgtestproxy/internal/testpg"
)

// With a password configured, clients authenticate with SCRAM-SHA-256.
func TestSCRAMAuth(t *testing.T) {
	t.Parallel()
	p := newTestProvider(t)
	s := startProxy(t, Config{Provider: p, Password: "right horse battery"})
	withPassword := func(pw string) string {
		u, _ := url.Parse(proxyURL(s, "app"))
		u.User = url.UserPassword("anyone", pw)
		return u.String()
	}
	c := connect(t, withPassword("right horse battery"))
	var n int
	if err := c.QueryRow(testContext(t), "SELECT count(*) FROM items").Scan(&n); err != nil || n != 3 {
		t.Fatalf("after SCRAM: %d, %v", n, err)
	}
	for _, pw := range []string{"wrong", ""} {
		_, err := pgx.Connect(testContext(t), withPassword(pw))
		if pw == "" {
			// pgx refuses to answer SCRAM without a password before the proxy judges it.
			if err == nil {
				t.Fatal("connected without a password")
			}
			continue
		}
		e := wantSQLState(t, err, "28P01")
		if !strings.Contains(e.Message, `"anyone"`) {
			t.Errorf("message %q does not name the user", e.Message)
		}
	}
	if got := p.acquired(); got != 1 {
		t.Fatalf("%d leases acquired, want 1: a failed login must not take a lease", got)
	}
	cmd := exec.Command(testpg.Psql(t), "-X", "-Atc", "SELECT 1", proxyURL(s, "app"))
	cmd.Env = append(cmd.Environ(), "PGPASSWORD=right horse battery")
	if out, err := cmd.CombinedOutput(); err != nil || strings.TrimSpace(string(out)) != "1" {
		t.Fatalf("psql with SCRAM: %v\n%s", err, out)
	}
}

// With TLS configured, an SSLRequest is answered 'S' and the session runs over TLS,
// password authentication included.
func TestTLS(t *testing.T) {
	t.Parallel()
	p := newTestProvider(t)
	s := startProxy(t, Config{Provider: p, TLS: selfSignedTLS(t), Password: "pw"})
	u, _ := url.Parse(proxyURL(s, "app"))
	u.User = url.UserPassword("tls", "pw")
	u.RawQuery = "sslmode=require"
	c := connect(t, u.String())
	if _, ok := c.PgConn().Conn().(*tls.Conn); !ok {
		t.Fatalf("client connection is %T, not TLS", c.PgConn().Conn())
	}
	var n int
	if err := c.QueryRow(testContext(t), "SELECT count(*) FROM items").Scan(&n); err != nil || n != 3 {
		t.Fatalf("over TLS: %d, %v", n, err)
	}
}

func selfSignedTLS(t *testing.T) *tls.Config {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "127.0.0.1"},
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, NotBefore: time.Now().Add(-time.Hour),
		NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}}
}

func TestConfigValidate(t *testing.T) {
	p := &testProvider{}
	tests := []struct {
		name string
		cfg  Config
		ok   bool
	}{
		{"defaults", Config{Provider: p}, true},
		{"no provider", Config{}, false},
		{"bad default mode", Config{Provider: p, DefaultMode: "fast"}, false},
		{"all interfaces without password", Config{Provider: p, Addr: ":6543"}, false},
		{"non-loopback without password", Config{Provider: p, Addr: "192.0.2.1:6543"}, false},
		{"non-loopback with password", Config{Provider: p, Addr: "0.0.0.0:6543", Password: "x"}, true},
		{"non-loopback allowed", Config{Provider: p, Addr: "0.0.0.0:6543", AllowNonLoopback: true}, true},
		{"localhost", Config{Provider: p, Addr: "localhost:0"}, true},
		{"ipv6 loopback", Config{Provider: p, Addr: "[::1]:0"}, true},
		{"bad address", Config{Provider: p, Addr: "nonsense"}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.cfg.Validate(); (err == nil) != tc.ok {
				t.Fatalf("Validate() = %v, want ok=%v", err, tc.ok)
			}
		})
	}
}
