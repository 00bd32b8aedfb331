package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
)

// proxyProc is a pgtestproxy serve process this program started.
type proxyProc struct {
	cmd     *exec.Cmd
	addr    string
	logPath string
	exited  chan struct{}
	waitErr error
}

// startProxy starts bin serve on a free port of 127.0.0.1 with upstream and migDir as
// its default template, and returns once the proxy answers on its admin console.
func startProxy(ctx context.Context, bin, upstream, migDir, extra, logPath string) (*proxyProc, error) {
	addr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	defer logFile.Close()
	args := []string{"serve", "--upstream", upstream, "--listen", addr, "--migrations", migDir}
	args = append(args, strings.Fields(extra)...)
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", bin, err)
	}
	p := &proxyProc{cmd: cmd, addr: addr, logPath: logPath, exited: make(chan struct{})}
	go func() {
		p.waitErr = cmd.Wait()
		close(p.exited)
	}()
	if err := p.waitReady(ctx); err != nil {
		_ = p.stop()
		return nil, err
	}
	return p, nil
}

// waitReady retries a connection to the admin console until it succeeds, the process
// exits or a minute passes.
func (p *proxyProc) waitReady(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	admin := p.dsn("pgtestproxy", nil)
	for {
		conn, err := pgconn.Connect(ctx, admin)
		if err == nil {
			return conn.Close(ctx)
		}
		select {
		case <-p.exited:
			return fmt.Errorf("pgtestproxy exited before it was ready (%v); see %s", p.waitErr, p.logPath)
		case <-ctx.Done():
			return fmt.Errorf("pgtestproxy not ready on %s: %w (last: %v); see %s", p.addr, ctx.Err(), err, p.logPath)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// dsn is a pgx URL to database db through the proxy with params added.
func (p *proxyProc) dsn(db string, params map[string]string) string {
	q := url.Values{"sslmode": {"disable"}}
	for k, v := range params {
		q.Set(k, v)
	}
	u := url.URL{Scheme: "postgres", User: url.User("postgres"), Host: p.addr, Path: "/" + db, RawQuery: q.Encode()}
	return u.String()
}

// stop ends the proxy: SIGTERM, then SIGKILL when it has not exited within 30 s.
func (p *proxyProc) stop() error {
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(30 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.exited
		return fmt.Errorf("pgtestproxy ignored SIGTERM for 30s; killed")
	}
	var exit *exec.ExitError
	if p.waitErr != nil && !errors.As(p.waitErr, &exit) {
		return p.waitErr
	}
	return nil
}

// freeAddr is a 127.0.0.1 address with a port nothing listens on right now.
func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	addr := l.Addr().String()
	return addr, l.Close()
}
