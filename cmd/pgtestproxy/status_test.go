package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/pgtestproxy/pgtestproxy/internal/testpg"
)

// openPty opens a pseudo-terminal with x/sys/unix (no pty library needed): the
// terminal side, to give as stderr, and everything written to it, read from the
// controlling side until the test ends.
func openPty(t *testing.T) (tty *os.File, out *ptyOutput) {
	t.Helper()
	ptmx, err := os.OpenFile("/dev/ptmx", os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Fatalf("open /dev/ptmx: %v", err)
	}
	fd := int(ptmx.Fd())
	if err := unix.IoctlSetPointerInt(fd, unix.TIOCSPTLCK, 0); err != nil {
		t.Fatalf("unlock pty: %v", err)
	}
	n, err := unix.IoctlGetUint32(fd, unix.TIOCGPTN)
	if err != nil {
		t.Fatalf("pty number: %v", err)
	}
	tty, err = os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Fatalf("open pty: %v", err)
	}
	out = &ptyOutput{more: make(chan struct{}, 1)}
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 4096)
		for {
			n, err := ptmx.Read(buf)
			out.add(buf[:n])
			if err != nil {
				return // EIO once the terminal side is closed
			}
		}
	}()
	t.Cleanup(func() {
		tty.Close()
		<-done
		ptmx.Close()
	})
	return tty, out
}

// ptyOutput is what a pseudo-terminal has shown so far.
type ptyOutput struct {
	mu   sync.Mutex
	b    bytes.Buffer
	more chan struct{} // signalled after each read
}

func (o *ptyOutput) add(p []byte) {
	o.mu.Lock()
	o.b.Write(p)
	o.mu.Unlock()
	select {
	case o.more <- struct{}{}:
	default:
	}
}

func (o *ptyOutput) String() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.b.String()
}

// waitFor waits until the terminal has shown s.
func (o *ptyOutput) waitFor(t *testing.T, s string) {
	t.Helper()
	guard := time.After(2 * time.Minute) // a hang guard, not a synchronisation
	for !strings.Contains(o.String(), s) {
		select {
		case <-o.more:
		case <-guard:
			t.Fatalf("the terminal never showed %q; it showed %q", s, o.String())
		}
	}
}

// runWaiting runs `pgtestproxy run` whose default template blocks at a gate, with
// stderr, and returns the gate's opener and run's exit status.
func runWaiting(t *testing.T, stderr io.Writer) (gate string, open func(), code <-chan int) {
	t.Helper()
	gate, open = testpg.Gate(t)
	dir := migrationsDir(t, gate+"\nCREATE TABLE users (id int);\n")
	t.Setenv("PGTESTPROXY_CHILD", "0")
	ch := make(chan int, 1)
	go func() {
		ch <- run(t.Context(), []string{"run", "--upstream", testpg.AdminURL(t), "--migrations", dir, "--pool-size", "1",
			"--", os.Args[0]}, env(nil), io.Discard, stderr)
	}()
	return gate, open, ch
}

// On a terminal, run shows a one-line indicator while it waits for the default
// template: what it waits for and the migration being applied.
func TestRunProgressOnTerminal(t *testing.T) {
	tty, out := openPty(t)
	_, open, code := runWaiting(t, tty)
	out.waitFor(t, "migration 1/1 001_init.up.sql")
	open()
	if c := <-code; c != 0 {
		t.Fatalf("run exited %d; terminal: %q", c, out.String())
	}
	if s := out.String(); !strings.Contains(s, "\r\x1b[K") || !strings.Contains(s, `waiting for the template of database "test"`) {
		t.Fatalf("no indicator line on the terminal: %q", s)
	}
}

// Not on a terminal, run shows no indicator, also while it waits.
func TestRunQuietWhenNotTerminal(t *testing.T) {
	r, w, err := os.Pipe() // a file, but not a terminal
	if err != nil {
		t.Fatal(err)
	}
	var got syncBuffer
	got.b = &bytes.Buffer{}
	copied := make(chan error, 1)
	go func() { _, err := io.Copy(&got, r); copied <- err }()
	gate, open, code := runWaiting(t, w)
	testpg.WaitRunning(t, gate) // run is waiting for the build, which is at the gate
	open()
	if c := <-code; c != 0 {
		t.Fatalf("run exited %d: %s", c, got.String())
	}
	w.Close()
	if err := <-copied; err != nil && !errors.Is(err, os.ErrClosed) {
		t.Fatal(err)
	}
	if s := got.String(); strings.Contains(s, "\r") || strings.Contains(s, "\x1b[") || strings.Contains(s, "waiting for the template") {
		t.Fatalf("indicator written to a non-terminal: %q", s)
	}
}

// On a terminal, run also shows the indicator while the embedded server starts (its
// first start, in a fresh data directory, runs initdb).
func TestRunProgressWhileEmbeddedServerStarts(t *testing.T) {
	base := os.TempDir()
	if fi, err := os.Stat("/dev/shm"); err == nil && fi.IsDir() {
		base = "/dev/shm"
	}
	scratch, err := os.MkdirTemp(base, "pgtestproxy-cmd-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(scratch) })
	tty, out := openPty(t)
	t.Setenv("PGTESTPROXY_CHILD", "0")
	code := run(t.Context(), []string{"run", "--data-dir", filepath.Join(scratch, "pg"), "--migrations",
		migrationsDir(t, usersOf(scratch)), "--pool-size", "1", "--", os.Args[0]}, env(nil), io.Discard, tty)
	if code != 0 {
		t.Fatalf("run exited %d; terminal: %q", code, out.String())
	}
	out.waitFor(t, "starting the embedded PostgreSQL server")
}
