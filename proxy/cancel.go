package proxy

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/binary"
	"fmt"
	"sync"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/pgtestproxy/pgtestproxy/proxy/internal/wire"
)

// cancelRegistry maps the keys the proxy issued to real backends.
type cancelRegistry struct {
	mu      sync.Mutex
	targets map[uint32]registered
}

type registered struct {
	secret [4]byte
	target wire.Canceler
}

func newCancelRegistry() *cancelRegistry {
	return &cancelRegistry{targets: map[uint32]registered{}}
}

// register issues a fresh random key for t.
func (c *cancelRegistry) register(t wire.Canceler) (wire.BackendKey, error) {
	var b [8]byte
	c.mu.Lock()
	defer c.mu.Unlock()
	for {
		if _, err := rand.Read(b[:]); err != nil {
			return wire.BackendKey{}, fmt.Errorf("random backend key: %w", err)
		}
		// Keep the process ID a positive int32, as clients that store it signed expect.
		pid := binary.BigEndian.Uint32(b[:4]) & 0x7fffffff
		if _, taken := c.targets[pid]; pid == 0 || taken {
			continue
		}
		k := wire.BackendKey{PID: pid}
		copy(k.Secret[:], b[4:])
		c.targets[pid] = registered{secret: k.Secret, target: t}
		return k, nil
	}
}

func (c *cancelRegistry) unregister(k wire.BackendKey) {
	c.mu.Lock()
	delete(c.targets, k.PID)
	c.mu.Unlock()
}

// lookup returns the target of a client's CancelRequest, or nil when the key is not
// one the proxy issued.
func (c *cancelRegistry) lookup(req *pgproto3.CancelRequest) wire.Canceler {
	c.mu.Lock()
	r, ok := c.targets[req.ProcessID]
	c.mu.Unlock()
	if !ok || subtle.ConstantTimeCompare(r.secret[:], req.SecretKey) != 1 {
		return nil
	}
	return r.target
}
