package pgtest

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"
)

// TestNoProxyAnswers: with nothing listening, the error names the address and says
// how to start the proxy.
func TestNoProxyAnswers(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close() // nobody listens there now
	t.Setenv(EnvURL, "postgres://pgtestproxy@"+addr+"/test?sslmode=disable")
	u, err := connString(proxyURL(), modeDB, "k")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	for name, open := range map[string]func() error{
		"database/sql": func() error { _, err := openDB(ctx, u); return err },
		"pgxpool":      func() error { _, err := openPool(ctx, u); return err },
	} {
		err := open()
		if err == nil {
			t.Fatalf("%s: connected to %s, where nothing listens", name, addr)
		}
		for _, want := range []string{"no pgtestproxy answers at " + addr, "pgtestproxy run --migrations", "pgtestproxy serve"} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("%s: error %q does not say %q", name, err, want)
			}
		}
	}
}

// TestConnStringKeepsTheProxyURL: the template, user and parameters stay; mode and
// session are added.
func TestConnStringKeepsTheProxyURL(t *testing.T) {
	u, err := connString("postgres://me@127.0.0.1:6543/shop?sslmode=disable&application_name=x", modeTx, "TestA/b#1.2")
	if err != nil {
		t.Fatal(err)
	}
	want := "postgres://me@127.0.0.1:6543/shop?application_name=x&mode=tx&session=TestA%2Fb%231.2&sslmode=disable"
	if u != want {
		t.Fatalf("connString = %s, want %s", u, want)
	}
	if _, err := connString("host=localhost", modeDB, "k"); err == nil {
		t.Fatal("a keyword/value string was taken for a URL")
	}
}
