package txmode

// spState says what the proxy's savepoint (spName) holds.
type spState uint8

const (
	// spNone: no proxy savepoint; the server is at the top level of the proxy's
	// transaction, where nothing of the client's may run.
	spNone spState = iota
	// spClean: the savepoint is set and nothing ran since.
	spClean
	// spDirty: the savepoint holds the work of finished autocommit units, which must be
	// released (committed, in the client's view) before the next unit runs.
	spDirty
)

// txState is where a tx-mode session stands: the client's view (in a transaction block
// or not) and the proxy's savepoint that carries it. The server's own status is 'T' or
// 'E' throughout, since the proxy's transaction is always open.
type txState struct {
	block  bool    // the client is in a transaction block of its own
	ro     bool    // the client's block is READ ONLY (kept by COMMIT/ROLLBACK AND CHAIN)
	sp     spState // the proxy's savepoint
	status byte    // the server's status at the last ReadyForQuery: 'T' or 'E'
}

// effect is what a statement the proxy rewrote does to the txState when it completes.
type effect uint8

const (
	effNone effect = iota
	// effBegin: the client's block begins (at the savepoint already set).
	effBegin
	// effReleased: the savepoint was released, committing the block or the autocommit
	// work in it.
	effReleased
	// effSavepoint: a fresh savepoint is set (SAVEPOINT, or ROLLBACK TO it).
	effSavepoint
	// effEnded: the block was rolled back to the savepoint, which stays set.
	effEnded
	// effChained: COMMIT or ROLLBACK AND CHAIN: a new block on a fresh savepoint.
	effChained
	// effAbandon: a COMMIT failed; as on a plain server, its block is over and is
	// rolled back when the unit ends.
	effAbandon
	// effReadOnly, effReadWrite: the client's block became READ ONLY or READ WRITE.
	effReadOnly
	effReadWrite
)

func (s *txState) apply(e effect) {
	switch e {
	case effBegin:
		s.block = true
	case effReleased:
		s.block, s.sp, s.ro = false, spNone, false
	case effSavepoint:
		s.sp = spClean
	case effEnded:
		s.block, s.sp, s.ro = false, spClean, false
	case effChained:
		s.block, s.sp = true, spClean
	case effAbandon:
		s.block, s.ro = false, false
	case effReadOnly:
		s.ro = true
	case effReadWrite:
		s.ro = false
	}
}

// clientStatus is the ReadyForQuery status the client sees for the server's status.
func (s *txState) clientStatus(server byte) byte {
	if s.block {
		return server
	}
	return 'I'
}
