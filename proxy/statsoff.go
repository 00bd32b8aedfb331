package proxy

import "bytes"

// A db-mode clone goes back to the pool only when the server's statistics show the
// lease changed nothing, and a superuser session can switch those statistics off for
// itself (SET track_counts = off, set_config, -c track_counts=off at startup), after
// which its changes are counted nowhere. The relay therefore watches the client's
// bytes for the setting's name, in any case, and a session that sends it is not clean:
// its clone is dropped. A false alarm (the name in a string, a comment, COPY data)
// only costs a fresh clone.

// statsOffName is the setting whose name taints a session; its '_' anchors the search.
var statsOffName = []byte("track_counts")

const statsOffAnchor = 5 // index of '_' in statsOffName

// statsOffScan looks for statsOffName in a stream fed in chunks.
type statsOffScan struct {
	tail [12]byte // the stream's last len(statsOffName)-1 bytes (or fewer, at its start)
	n    int
	seen bool
}

// feed scans the next chunk of the stream.
func (s *statsOffScan) feed(b []byte) {
	if s.seen || len(b) == 0 {
		return
	}
	keep := len(statsOffName) - 1
	// A name split between chunks: the tail and the chunk's first bytes.
	var edge [2 * 11]byte
	m := copy(edge[:], s.tail[:s.n])
	m += copy(edge[m:], b[:min(len(b), keep)])
	if namesStatsOff(edge[:m]) || namesStatsOff(b) {
		s.seen = true
		return
	}
	if len(b) >= keep {
		s.n = copy(s.tail[:], b[len(b)-keep:])
		return
	}
	m = copy(edge[:], edge[max(0, m-keep):m])
	s.n = copy(s.tail[:], edge[:m])
}

// namesStatsOff reports whether b holds statsOffName, in any case.
func namesStatsOff(b []byte) bool {
	for i := 0; i < len(b); {
		j := bytes.IndexByte(b[i:], '_')
		if j < 0 {
			return false
		}
		j += i
		if start := j - statsOffAnchor; start >= 0 && start+len(statsOffName) <= len(b) &&
			bytes.EqualFold(b[start:start+len(statsOffName)], statsOffName) {
			return true
		}
		i = j + 1
	}
	return false
}

// startupNamesStatsOff reports whether a client's runtime parameters name
// statsOffName (a key, or a value such as options=-c track_counts=off).
func startupNamesStatsOff(runtime map[string]string) bool {
	for k, v := range runtime {
		if namesStatsOff([]byte(k)) || namesStatsOff([]byte(v)) {
			return true
		}
	}
	return false
}
