package sqllex

import "strings"

// Kind says what a statement is, as far as transaction handling cares.
type Kind uint8

const (
	// Other is every statement not listed below, and anything not well-formed:
	// "BEGIN foo" is Other, left for the server to reject.
	Other Kind = iota
	// Empty is a piece holding nothing but whitespace and comments.
	Empty
	// Begin is BEGIN [WORK | TRANSACTION] or START TRANSACTION, with optional
	// transaction modes (Statement.Modes).
	Begin
	// Commit is COMMIT or END, [WORK | TRANSACTION], [AND [NO] CHAIN] (Statement.Chain).
	Commit
	// Rollback is ROLLBACK or ABORT, [WORK | TRANSACTION], [AND [NO] CHAIN].
	Rollback
	// Savepoint is SAVEPOINT name (Statement.Name).
	Savepoint
	// Release is RELEASE [SAVEPOINT] name.
	Release
	// RollbackTo is ROLLBACK [WORK | TRANSACTION] TO [SAVEPOINT] name.
	RollbackTo
	// PrepareTransaction is PREPARE TRANSACTION 'gid' (Statement.Literal).
	PrepareTransaction
	// CommitPrepared is COMMIT PREPARED 'gid'; it cannot run inside a transaction block.
	CommitPrepared
	// RollbackPrepared is ROLLBACK PREPARED 'gid'; it cannot run inside a transaction block.
	RollbackPrepared
	// SetTransaction is SET [LOCAL | SESSION] TRANSACTION modes, SET TRANSACTION
	// SNAPSHOT 'id', or SET SESSION CHARACTERISTICS AS TRANSACTION modes
	// (Statement.Session).
	SetTransaction
	// NoTxBlock is a statement PostgreSQL refuses to run inside a transaction block
	// (Statement.NoTxCommand says which).
	NoTxBlock
	// Listen is LISTEN channel (Statement.Name).
	Listen
	// Unlisten is UNLISTEN channel (Statement.Name), or UNLISTEN * (Name empty).
	Unlisten
	// Notify is NOTIFY channel [, 'payload'] (Statement.Name, Statement.Literal).
	Notify
)

var kindNames = [...]string{
	Other:              "Other",
	Empty:              "Empty",
	Begin:              "Begin",
	Commit:             "Commit",
	Rollback:           "Rollback",
	Savepoint:          "Savepoint",
	Release:            "Release",
	RollbackTo:         "RollbackTo",
	PrepareTransaction: "PrepareTransaction",
	CommitPrepared:     "CommitPrepared",
	RollbackPrepared:   "RollbackPrepared",
	SetTransaction:     "SetTransaction",
	NoTxBlock:          "NoTxBlock",
	Listen:             "Listen",
	Unlisten:           "Unlisten",
	Notify:             "Notify",
}

func (k Kind) String() string {
	if int(k) < len(kindNames) {
		return kindNames[k]
	}
	return "Kind(" + itoa(int(k)) + ")"
}

func itoa(n int) string {
	var b [20]byte
	i := len(b)
	for {
		i--
		b[i] = byte('0' + n%10)
		n /= 10
		if n == 0 {
			return string(b[i:])
		}
	}
}

// Statement is one statement of a query string and what it is.
type Statement struct {
	// Text is the statement exactly as written, with its leading and trailing
	// whitespace and comments, without the ';' that ends it.
	Text string
	// Start and End are the byte offsets of Text in the string given to Split:
	// sql[Start:End] == Text. Classify sets 0 and len(sql).
	Start, End int

	Kind Kind
	// Tag is the command tag PostgreSQL completes the statement with when it
	// succeeds, for every kind from Begin to SetTransaction: "BEGIN", "START
	// TRANSACTION", "COMMIT", "ROLLBACK" (also for ROLLBACK TO), "SAVEPOINT",
	// "RELEASE", "PREPARE TRANSACTION", "COMMIT PREPARED", "ROLLBACK PREPARED",
	// "SET"; and "LISTEN", "UNLISTEN", "NOTIFY". Empty for Other, Empty and NoTxBlock.
	Tag string
	// NoTxCommand names the statement as PostgreSQL does in its error "%s cannot run
	// inside a transaction block" (SQLSTATE 25001): "CREATE DATABASE", "VACUUM",
	// "CREATE INDEX CONCURRENTLY", … It is set for NoTxBlock, CommitPrepared and
	// RollbackPrepared, and empty otherwise.
	NoTxCommand string

	// Modes are the transaction modes of Begin and SetTransaction.
	Modes TxModes
	// Session marks SET SESSION CHARACTERISTICS AS TRANSACTION, which sets the
	// defaults of later transactions rather than the modes of the current one.
	Session bool
	// Chain is true for COMMIT/END/ROLLBACK/ABORT … AND CHAIN.
	Chain bool
	// Name is the savepoint of Savepoint, Release and RollbackTo, the channel of
	// Listen, Unlisten and Notify.
	Name Ident
	// Literal is the value of the string argument: the transaction identifier of
	// PrepareTransaction, CommitPrepared and RollbackPrepared, the snapshot of SET
	// TRANSACTION SNAPSHOT, the payload of Notify.
	Literal string
}

// Ident is an SQL identifier.
type Ident struct {
	// Raw is the identifier as written: sp1, "Sp 1", U&"sp\00311" UESCAPE '\'.
	Raw string
	// Name is what PostgreSQL makes of it: an unquoted identifier is lower-cased
	// (ASCII letters only), a quoted one has its quotes and escapes undone, and the
	// result is truncated to 63 bytes (NAMEDATALEN-1, at a UTF-8 character boundary).
	Name string
}

// Isolation is a transaction isolation level.
type Isolation uint8

const (
	IsolationUnset Isolation = iota // not given
	ReadUncommitted
	ReadCommitted
	RepeatableRead
	Serializable
)

var isolationNames = [...]string{"", "READ UNCOMMITTED", "READ COMMITTED", "REPEATABLE READ", "SERIALIZABLE"}

// String returns the level as SQL spells it ("REPEATABLE READ"), "" when unset.
func (i Isolation) String() string {
	if int(i) < len(isolationNames) {
		return isolationNames[i]
	}
	return "Isolation(" + itoa(int(i)) + ")"
}

// Tristate is a mode that is given as on, given as off, or not given.
type Tristate uint8

const (
	Unset Tristate = iota
	Yes
	No
)

// TxModes are the transaction modes of a BEGIN, START TRANSACTION or SET TRANSACTION.
// A mode given twice takes its last value, as PostgreSQL applies them in order.
type TxModes struct {
	Isolation Isolation
	// ReadOnly is Yes for READ ONLY, No for READ WRITE.
	ReadOnly Tristate
	// Deferrable is Yes for DEFERRABLE, No for NOT DEFERRABLE.
	Deferrable Tristate
}

// String returns the modes as one normalised SQL transaction_mode_list, in the order
// isolation, access, deferrable: "ISOLATION LEVEL SERIALIZABLE, READ ONLY,
// DEFERRABLE". It returns "" when no mode is set.
func (m TxModes) String() string {
	var parts [3]string
	n := 0
	if m.Isolation != IsolationUnset {
		parts[n] = "ISOLATION LEVEL " + m.Isolation.String()
		n++
	}
	switch m.ReadOnly {
	case Yes:
		parts[n] = "READ ONLY"
		n++
	case No:
		parts[n] = "READ WRITE"
		n++
	}
	switch m.Deferrable {
	case Yes:
		parts[n] = "DEFERRABLE"
		n++
	case No:
		parts[n] = "NOT DEFERRABLE"
		n++
	}
	return strings.Join(parts[:n], ", ")
}
