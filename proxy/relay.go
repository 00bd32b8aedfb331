package proxy

import (
	"encoding/binary"
	"errors"
	"fmt"
	"github.com/jackc/pgerrcode"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pgtestproxy/pgtestproxy/internal/pgerr"
	"github.com/pgtestproxy/pgtestproxy/proxy/internal/wire"
)

// relayBufSize is the copy buffer of each relay direction.
const relayBufSize = 32 << 10

var relayBufs = sync.Pool{New: func() any { b := make([]byte, relayBufSize); return &b }}

// relay is the db-mode session: it copies bytes both ways between client and upstream
// without decoding them. It tracks only where the upstream's messages begin, so that
// a shutdown can end an idle session with a FATAL ErrorResponse instead of a dropped
// socket.
type relay struct {
	client   net.Conn
	upstream net.Conn
	guard    *wire.Guard
	stats    *counters
	cutting  atomic.Bool
	panicked atomic.Bool  // a direction panicked: the session ends with XX000
	frames   frameTracker // the upstream's message boundaries; upstream direction only
	statsOff statsOffScan // the client's bytes name track_counts; client direction only
}

func newRelay(client, upstream net.Conn, guard *wire.Guard) *relay {
	return &relay{client: client, upstream: upstream, guard: guard, stats: guard.Stats}
}

// run relays until both directions are done, then closes both sockets. It reports
// whether the upstream connection ended without a failure, and the client never named
// track_counts (statsoff.go).
func (r *relay) run() (clean bool) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		r.contain("relay client to upstream", r.clientToUpstream)
	}()
	r.contain("relay upstream to client", func() { clean = r.upstreamToClient() })
	<-done
	if r.panicked.Load() && r.frames.atBoundary() && wire.SayInternalError(r.client) {
		r.stats.Error(pgerrcode.InternalError)
	}
	_ = r.client.Close()
	_ = r.upstream.Close()
	return clean && !r.cutting.Load() && !r.panicked.Load() && !r.statsOff.seen
}

// contain runs one direction; a panic in it stops both.
func (r *relay) contain(where string, direction func()) {
	defer func() {
		if p := recover(); p != nil {
			r.guard.Recovered(where, p)
			r.panicked.Store(true)
			wire.Interrupt(r.upstream)
			wire.Interrupt(r.client)
		}
	}()
	direction()
}

// clientToUpstream copies client bytes to the upstream. On the client's EOF it
// half-closes the upstream, which then ends the backend and so the other direction;
// on any other end it interrupts the other direction.
func (r *relay) clientToUpstream() {
	bp := relayBufs.Get().(*[]byte)
	defer relayBufs.Put(bp)
	buf := *bp
	for {
		n, err := r.client.Read(buf)
		if n > 0 {
			r.guard.At("relay client to upstream")
			r.statsOff.feed(buf[:n]) // before the write: the bytes may reach the server
			if _, werr := r.upstream.Write(buf[:n]); werr != nil {
				wire.Interrupt(r.upstream)
				return
			}
			r.stats.BytesIn.Add(int64(n))
		}
		if errors.Is(err, io.EOF) {
			wire.CloseWrite(r.upstream)
			return
		}
		if err != nil {
			wire.Interrupt(r.upstream)
			return
		}
	}
}

// upstreamToClient copies upstream bytes to the client until the upstream ends, then
// stops the other direction: without a backend the session is over. It reports
// whether the upstream ended by closing normally (or the client went away first).
func (r *relay) upstreamToClient() (clean bool) {
	defer wire.Interrupt(r.client)
	bp := relayBufs.Get().(*[]byte)
	defer relayBufs.Put(bp)
	buf := *bp
	for {
		n, err := r.upstream.Read(buf)
		if n > 0 {
			r.guard.At("relay upstream to client")
			if _, werr := r.client.Write(buf[:n]); werr != nil {
				return true // the client went away; the upstream is fine
			}
			r.frames.advance(buf[:n])
			r.stats.BytesOut.Add(int64(n))
		}
		switch {
		case err == nil:
		case errors.Is(err, io.EOF):
			return true
		case wire.IsInterrupted(err) && r.cutting.Load():
			if r.frames.atBoundary() {
				r.sayShutdown()
			}
			return false
		case wire.IsInterrupted(err):
			return true // the client direction ended: the client went away
		default:
			if r.frames.atBoundary() {
				r.sayUpstreamLost(err)
			}
			return false
		}
	}
}

// sayShutdown tells the client, between two upstream messages, that the proxy is
// ending its session.
func (r *relay) sayShutdown() {
	var out wire.MsgBuffer
	out.Add(wire.ShutdownResponse())
	_ = r.client.SetWriteDeadline(time.Now().Add(wire.GoodbyeWriteTimeout))
	if out.Flush(r.client) == nil {
		r.stats.Error(pgerrcode.AdminShutdown)
	}
}

// sayUpstreamLost tells the client, between two upstream messages, that its backend's
// connection broke (a reset, say, after which the kernel keeps no FATAL the server
// may have sent): FATAL 08006 rather than a dropped socket.
func (r *relay) sayUpstreamLost(cause error) {
	var out wire.MsgBuffer
	out.Add(wire.ErrorResponse("FATAL", pgerr.New(pgerrcode.ConnectionFailure,
		fmt.Sprintf("connection to the upstream lost: %v", cause))))
	_ = r.client.SetWriteDeadline(time.Now().Add(wire.GoodbyeWriteTimeout))
	if out.Flush(r.client) == nil {
		r.stats.Error(pgerrcode.ConnectionFailure)
	}
}

// Cut ends the session from outside (shutdown): both reads return at once and the
// client is told why if the upstream stream is between messages.
func (r *relay) Cut() {
	r.cutting.Store(true)
	wire.Interrupt(r.upstream)
	wire.Interrupt(r.client)
	_ = r.client.SetWriteDeadline(time.Now().Add(wire.GoodbyeWriteTimeout))
}

// frameTracker follows the message boundaries of a backend byte stream (a type byte
// and a 4-byte length per message) without decoding anything else.
type frameTracker struct {
	header    [5]byte
	headerLen int   // bytes of the current header seen so far
	remaining int64 // body bytes of the current message still to come
}

func (f *frameTracker) advance(p []byte) {
	for len(p) > 0 {
		if f.remaining > 0 {
			k := min(int64(len(p)), f.remaining)
			f.remaining -= k
			p = p[k:]
			continue
		}
		k := copy(f.header[f.headerLen:], p)
		f.headerLen += k
		p = p[k:]
		if f.headerLen == len(f.header) {
			f.remaining = int64(binary.BigEndian.Uint32(f.header[1:])) - 4
			f.headerLen = 0
		}
	}
}

func (f *frameTracker) atBoundary() bool { return f.headerLen == 0 && f.remaining <= 0 }
