package migrations

import "sync"

// keptSnapshots bounds how many hashes a memo remembers for Migrate. A caller hashes
// and then migrates straight away, so a handful is plenty even while the files are
// being edited.
const keptSnapshots = 8

// memo remembers what produced each of the last keptSnapshots hashes, so that Migrate
// builds exactly what Hash named. The zero value is ready; it is safe for concurrent
// use.
type memo[T any] struct {
	mu     sync.Mutex
	byHash map[string]T
	hashes []string // byHash keys, oldest first
}

func (m *memo[T]) put(hash string, v T) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.byHash == nil {
		m.byHash = make(map[string]T)
	}
	if _, ok := m.byHash[hash]; ok {
		return
	}
	m.byHash[hash] = v
	m.hashes = append(m.hashes, hash)
	if len(m.hashes) > keptSnapshots {
		delete(m.byHash, m.hashes[0])
		m.hashes = m.hashes[1:]
	}
}

func (m *memo[T]) get(hash string) (T, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	v, ok := m.byHash[hash]
	return v, ok
}
