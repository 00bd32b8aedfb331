package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"os/exec"
	"syscall"
	"time"
)

// clientEnv is the environment `run` gives its command: DATABASE_URL and the libpq
// variables, pointing at the proxy.
func clientEnv(addr, database string) []string {
	host, port, _ := net.SplitHostPort(addr)
	u := url.URL{Scheme: "postgres", User: url.User("pgtestproxy"), Host: addr,
		Path: "/" + database, RawQuery: "sslmode=disable"}
	return []string{
		"DATABASE_URL=" + u.String(),
		"PGHOST=" + host,
		"PGPORT=" + port,
		"PGUSER=pgtestproxy",
		"PGDATABASE=" + database,
		"PGSSLMODE=disable",
		"PGTESTPROXY_URL=" + u.String(),
	}
}

// runChild runs argv with env added to this process's environment and returns its exit
// status. When ctx ends the command gets SIGTERM, then SIGKILL after a grace period.
func runChild(ctx context.Context, argv, env []string, stdout, stderr io.Writer) int {
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, stdout, stderr
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 10 * time.Second
	err := cmd.Run()
	var exit *exec.ExitError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &exit):
		if ws, ok := exit.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return 128 + int(ws.Signal())
		}
		return exit.ExitCode()
	default:
		fmt.Fprintf(stderr, "pgtestproxy run: %v\n", err)
		return 127
	}
}
