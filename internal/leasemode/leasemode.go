// Package leasemode names pgtestproxy's lease modes. It is a leaf that both the proxy (which
// parses a client's choice) and the pool (which keeps tx-mode clones apart) import, so
// the program has one Mode type and cmd needs no conversion between them.
package leasemode

// Mode is how a lease uses its clone.
type Mode string

const (
	// DB leases a fresh clone exclusively; it is dropped when the lease ends.
	DB Mode = "db"
	// Tx leases a clean clone inside a transaction the proxy opened and rolls back at
	// the lease's end; the clone (and its backend) go back to the pool.
	Tx Mode = "tx"
)

// Valid reports whether m is a mode pgtestproxy knows.
func (m Mode) Valid() bool { return m == DB || m == Tx }
