package proxy

import (
	"crypto/rand"
	"crypto/subtle"
	"fmt"
	"slices"
	"sync"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/pgtestproxy/pgtestproxy/proxy/internal/wire"
)

// cancelRegistry maps the keys the proxy issued to what they cancel. A key carries the
// real backend's process ID, so that the PID a client sees is the one the server
// functions know; the secret is the proxy's. Connections that share a tx-mode backend
// share its PID, so a key is the pair (PID, secret).
type cancelRegistry struct {
	mu      sync.Mutex
	targets map[uint32][]registered // by PID
}

type registered struct {
	secret [4]byte
	target wire.Canceler
}

func newCancelRegistry() *cancelRegistry {
	return &cancelRegistry{targets: map[uint32][]registered{}}
}

// register issues a key with the backend's process ID pid and a fresh random secret
// for t.
func (c *cancelRegistry) register(pid uint32, t wire.Canceler) (wire.BackendKey, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	k := wire.BackendKey{PID: pid}
	for {
		if _, err := rand.Read(k.Secret[:]); err != nil {
			return wire.BackendKey{}, fmt.Errorf("random backend key: %w", err)
		}
		if !slices.ContainsFunc(c.targets[pid], func(r registered) bool { return r.secret == k.Secret }) {
			break
		}
	}
	c.targets[pid] = append(c.targets[pid], registered{secret: k.Secret, target: t})
	return k, nil
}

func (c *cancelRegistry) unregister(k wire.BackendKey) {
	c.mu.Lock()
	defer c.mu.Unlock()
	rs := slices.DeleteFunc(c.targets[k.PID], func(r registered) bool { return r.secret == k.Secret })
	if len(rs) == 0 {
		delete(c.targets, k.PID)
		return
	}
	c.targets[k.PID] = rs
}

// lookup returns the target of a client's CancelRequest, or nil when the key is not
// one the proxy issued.
func (c *cancelRegistry) lookup(req *pgproto3.CancelRequest) wire.Canceler {
	c.mu.Lock()
	defer c.mu.Unlock()
	var found wire.Canceler
	for _, r := range c.targets[req.ProcessID] {
		if subtle.ConstantTimeCompare(r.secret[:], req.SecretKey) == 1 {
			found = r.target
		}
	}
	return found
}
