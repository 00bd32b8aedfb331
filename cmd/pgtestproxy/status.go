package main

import (
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/pgtestproxy/pgtestproxy/pool"
)

// statusRedraw is how often the status line redraws to advance its clock and spinner.
const statusRedraw = 250 * time.Millisecond

// statusLine is `run`'s one-line progress indicator on a terminal: while the user
// waits (for the embedded server to start, for the default template to build) it
// shows what is happening and for how long, redrawn in place. Log lines written
// through it clear the line first and redraw it after. All methods work on a nil
// *statusLine (no terminal) and then do nothing but pass writes on.
type statusLine struct {
	w    io.Writer
	stop chan struct{}
	done chan struct{}

	mu     sync.Mutex
	what   string    // what the user waits for; "" when not waiting
	detail string    // where it is (the migration being applied)
	since  time.Time // when the wait began
	spin   int
	shown  bool // a status is on the screen
}

// newStatusLine returns a status line on w when w is a terminal, else nil.
func newStatusLine(w io.Writer) *statusLine {
	if !isTerminal(w) {
		return nil
	}
	s := &statusLine{w: w, stop: make(chan struct{}), done: make(chan struct{})}
	go s.redrawLoop()
	return s
}

// isTerminal reports whether w is a terminal (a tty that answers the ioctl that reads its settings).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	_, err := unix.IoctlGetTermios(int(f.Fd()), ioctlGetTermios)
	return err == nil
}

// begin shows that the user now waits for what.
func (s *statusLine) begin(what string) {
	if s == nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.what, s.detail, s.since = what, "", time.Now()
	s.draw()
}

// build shows where a template build is, while the user waits.
func (s *statusLine) build(b pool.BuildProgress) {
	if s == nil || b.Done || b.Step == 0 {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.detail = fmt.Sprintf("migration %d/%d %s", b.Step, b.Steps, b.File)
	if s.what != "" {
		s.draw()
	}
}

// end clears the line: the wait is over.
func (s *statusLine) end() {
	if s == nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.what = ""
	s.clear()
}

// Write writes p (a log line) above the status.
func (s *statusLine) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.clear()
	n, err := s.w.Write(p)
	s.draw()
	return n, err
}

// close stops the redraws and clears the line.
func (s *statusLine) close() {
	if s == nil {
		return
	}
	close(s.stop)
	<-s.done
	s.end()
}

func (s *statusLine) redrawLoop() {
	defer close(s.done)
	t := time.NewTicker(statusRedraw)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
			s.mu.Lock()
			s.spin++
			s.draw()
			s.mu.Unlock()
		}
	}
}

// draw shows the status, if the user waits; the caller holds mu.
func (s *statusLine) draw() {
	if s.what == "" {
		return
	}
	line := fmt.Sprintf("%c %s", `|/-\`[s.spin%4], s.what)
	if s.detail != "" {
		line += ": " + s.detail
	}
	line += fmt.Sprintf(" (%ds)", int(time.Since(s.since).Seconds()))
	fmt.Fprintf(s.w, "\r\x1b[K%s", line)
	s.shown = true
}

// clear erases the status from the screen; the caller holds mu.
func (s *statusLine) clear() {
	if s.shown {
		fmt.Fprint(s.w, "\r\x1b[K")
		s.shown = false
	}
}
