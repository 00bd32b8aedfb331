package sqllex

// Classify classifies one statement: a piece of a query string (Split calls it on
// each) or the query of an extended-protocol Parse message, which holds one
// statement. A trailing ';' and empty statements after it are allowed; anything
// else after a ';' makes a transaction-control statement Other, as PostgreSQL would
// refuse it in a Parse message.
//
// Only the first words are read for most statements: one that does not start with
// BEGIN, START, COMMIT, END, ROLLBACK, ABORT, SAVEPOINT, RELEASE, PREPARE, SET,
// CREATE, DROP, ALTER, VACUUM, CLUSTER, REINDEX, DISCARD, LISTEN, UNLISTEN or NOTIFY is Other after one token,
// without allocating.
func Classify(sql string) Statement {
	st := Statement{Text: sql, End: len(sql)}
	p := parser{lx: lexer{src: sql}}
	p.advance()
	switch {
	case p.tok.kind == tokEOF:
		if !p.tok.bad {
			st.Kind = Empty
		}
		return st
	case p.isSelf(';'):
		if p.atEnd() {
			st.Kind = Empty
		}
		return st
	case p.tok.kind != tokWord:
		return st
	}
	w := p.text()
	var noTx string
	switch len(w) {
	case 3:
		switch {
		case eqFold(w, "end"):
			p.advance()
			p.commit(&st, false)
		case eqFold(w, "set"):
			p.advance()
			p.set(&st)
		}
	case 4:
		if eqFold(w, "drop") {
			p.advance()
			noTx = p.drop()
		}
	case 5:
		switch {
		case eqFold(w, "begin"):
			p.advance()
			if !p.accept("work") {
				p.accept("transaction")
			}
			p.begin(&st, "BEGIN")
		case eqFold(w, "start"):
			p.advance()
			if p.accept("transaction") {
				p.begin(&st, "START TRANSACTION")
			}
		case eqFold(w, "abort"):
			p.advance()
			p.rollback(&st, false)
		case eqFold(w, "alter"):
			p.advance()
			noTx = p.alter()
		}
	case 6:
		switch {
		case eqFold(w, "commit"):
			p.advance()
			p.commit(&st, true)
		case eqFold(w, "create"):
			p.advance()
			noTx = p.create()
		case eqFold(w, "vacuum"):
			noTx = "VACUUM"
		case eqFold(w, "listen"):
			p.advance()
			p.channel(&st, Listen, "LISTEN")
		case eqFold(w, "notify"):
			p.advance()
			p.notify(&st)
		}
	case 7:
		switch {
		case eqFold(w, "release"):
			p.advance()
			p.savepoint(&st, Release, "RELEASE", true)
		case eqFold(w, "prepare"):
			p.advance()
			if p.accept("transaction") {
				p.prepared(&st, PrepareTransaction, "PREPARE TRANSACTION")
			}
		case eqFold(w, "cluster"):
			p.advance()
			noTx = p.cluster()
		case eqFold(w, "reindex"):
			p.advance()
			noTx = p.reindex()
		case eqFold(w, "discard"):
			p.advance()
			if p.accept("all") && p.atEnd() {
				noTx = "DISCARD ALL"
			}
		}
	case 8:
		switch {
		case eqFold(w, "rollback"):
			p.advance()
			p.rollback(&st, true)
		case eqFold(w, "unlisten"):
			p.advance()
			if p.isOp("*") {
				p.advance()
				if p.atEnd() {
					st.Kind, st.Tag = Unlisten, "UNLISTEN"
				}
				break
			}
			p.channel(&st, Unlisten, "UNLISTEN")
		}
	case 9:
		if eqFold(w, "savepoint") {
			p.advance()
			p.savepoint(&st, Savepoint, "SAVEPOINT", false)
		}
	}
	if noTx != "" {
		st.Kind, st.NoTxCommand = NoTxBlock, noTx
	}
	return st
}

// Keyword returns the first word of sql — the keyword that names the statement — as
// written, skipping leading whitespace and comments. It returns "" when sql does not
// start with an unquoted word. PostgreSQL folds only ASCII letters in keywords, so
// compare it ignoring ASCII case. It does not allocate.
func Keyword(sql string) string {
	l := lexer{src: sql}
	t := l.next()
	if t.kind != tokWord {
		return ""
	}
	return sql[t.start:t.end]
}

// Words returns the tokens of sql, as written, up to the first max or the end:
// unquoted words, and every other token (quoted names, strings, operators, "(") as
// its text, skipping whitespace and comments. tx mode reads a statement's leading
// keywords with it (SET LOCAL, DECLARE … WITH HOLD).
func Words(sql string, max int) []string {
	var out []string
	for _, w := range Tokens(sql, max) {
		out = append(out, w.Text)
	}
	return out
}

// Token is one token of Tokens: sql[Start:End].
type Token struct {
	Text       string
	Start, End int
}

// Tokens is Words with each token's place in sql.
func Tokens(sql string, max int) []Token {
	l := lexer{src: sql}
	var out []Token
	for len(out) < max {
		t := l.next()
		if t.kind == tokEOF {
			break
		}
		out = append(out, Token{Text: sql[t.start:t.end], Start: t.start, End: t.end})
	}
	return out
}

// parser reads the tokens of one statement with one token of look-ahead.
type parser struct {
	lx      lexer
	tok     token
	prevEnd int // end of the token before tok
}

func (p *parser) advance() {
	p.prevEnd = p.tok.end
	p.tok = p.lx.next()
}

func (p *parser) text() string { return p.lx.src[p.tok.start:p.tok.end] }

// is reports whether the current token is the unquoted keyword kw (lower case).
func (p *parser) is(kw string) bool { return p.tok.kind == tokWord && eqFold(p.text(), kw) }

func (p *parser) accept(kw string) bool {
	if p.is(kw) {
		p.advance()
		return true
	}
	return false
}

func (p *parser) isSelf(c byte) bool { return p.tok.kind == tokSelf && p.lx.src[p.tok.start] == c }

// peekIs reports whether the token after the current one is the keyword kw.
func (p *parser) peekIs(kw string) bool {
	l := p.lx
	t := l.next()
	return t.kind == tokWord && eqFold(l.src[t.start:t.end], kw)
}

// atEnd reports whether the statement ends cleanly at the current token: the input
// ends, or only ';' follow, and no comment was left open.
func (p *parser) atEnd() bool {
	if p.tok.kind == tokEOF {
		return !p.tok.bad
	}
	if !p.isSelf(';') {
		return false
	}
	l := p.lx
	for {
		t := l.next()
		switch {
		case t.kind == tokEOF:
			return !t.bad
		case t.kind != tokSelf || l.src[t.start] != ';':
			return false
		}
	}
}

// begin parses the transaction modes of BEGIN or START TRANSACTION.
func (p *parser) begin(st *Statement, tag string) {
	if m, ok := p.modes(false); ok {
		st.Kind, st.Tag, st.Modes = Begin, tag, m
	}
}

// commit parses the rest of COMMIT (prepared) or END.
func (p *parser) commit(st *Statement, prepared bool) {
	if prepared && p.accept("prepared") {
		p.prepared(st, CommitPrepared, "COMMIT PREPARED")
		return
	}
	p.optTransaction()
	if chain, ok := p.chain(); ok {
		st.Kind, st.Tag, st.Chain = Commit, "COMMIT", chain
	}
}

// rollback parses the rest of ROLLBACK (full) or ABORT.
func (p *parser) rollback(st *Statement, full bool) {
	if full && p.accept("prepared") {
		p.prepared(st, RollbackPrepared, "ROLLBACK PREPARED")
		return
	}
	p.optTransaction()
	if full && p.accept("to") {
		p.savepoint(st, RollbackTo, "ROLLBACK", true)
		return
	}
	if chain, ok := p.chain(); ok {
		st.Kind, st.Tag, st.Chain = Rollback, "ROLLBACK", chain
	}
}

// optTransaction skips an optional WORK or TRANSACTION.
func (p *parser) optTransaction() {
	if !p.accept("work") {
		p.accept("transaction")
	}
}

// chain parses [AND [NO] CHAIN] and the end of the statement.
func (p *parser) chain() (chain, ok bool) {
	if p.accept("and") {
		no := p.accept("no")
		if !p.accept("chain") {
			return false, false
		}
		chain = !no
	}
	return chain, p.atEnd()
}

// savepoint parses a savepoint name, preceded by an optional SAVEPOINT keyword when
// optKeyword, and the end of the statement.
func (p *parser) savepoint(st *Statement, kind Kind, tag string, optKeyword bool) {
	if optKeyword && p.is("savepoint") {
		// RELEASE SAVEPOINT sp, or RELEASE savepoint: the word is then the name.
		save := *p
		p.advance()
		if p.atEnd() {
			*p = save
		}
	}
	if id, ok := p.colID(); ok && p.atEnd() {
		st.Kind, st.Tag, st.Name = kind, tag, id
	}
}

// prepared parses the string literal of PREPARE TRANSACTION, COMMIT PREPARED or
// ROLLBACK PREPARED and the end of the statement.
func (p *parser) prepared(st *Statement, kind Kind, tag string) {
	if lit, ok := p.sconst(); ok && p.atEnd() {
		st.Kind, st.Tag, st.Literal = kind, tag, lit
		if kind != PrepareTransaction {
			st.NoTxCommand = tag
		}
	}
}

// channel parses the channel name of LISTEN or UNLISTEN and the end of the statement.
func (p *parser) channel(st *Statement, kind Kind, tag string) {
	if id, ok := p.colID(); ok && p.atEnd() {
		st.Kind, st.Tag, st.Name = kind, tag, id
	}
}

// notify parses the rest of NOTIFY channel [, 'payload'].
func (p *parser) notify(st *Statement) {
	id, ok := p.colID()
	if !ok {
		return
	}
	payload := ""
	if p.isSelf(',') {
		p.advance()
		if payload, ok = p.sconst(); !ok {
			return
		}
	}
	if p.atEnd() {
		st.Kind, st.Tag, st.Name, st.Literal = Notify, "NOTIFY", id, payload
	}
}

// set parses the rest of SET when it sets transaction modes.
//
//	SET [LOCAL | SESSION] TRANSACTION mode [, …]
//	SET [LOCAL | SESSION] TRANSACTION SNAPSHOT 'id'
//	SET [LOCAL | SESSION] SESSION CHARACTERISTICS AS TRANSACTION mode [, …]
//	SET [LOCAL | SESSION] [default_]transaction_{isolation|read_only|deferrable} {TO | =} value
func (p *parser) set(st *Statement) {
	if !p.accept("local") && p.is("session") && !p.peekIs("characteristics") {
		p.advance()
	}
	if p.tok.kind == tokWord && !p.is("session") && !p.is("transaction") {
		p.setVariable(st)
		return
	}
	session := p.accept("session")
	if session && !(p.accept("characteristics") && p.accept("as")) {
		return
	}
	if !p.accept("transaction") {
		return
	}
	if !session && p.accept("snapshot") {
		if lit, ok := p.sconst(); ok && p.atEnd() {
			st.Kind, st.Tag, st.Literal = SetTransaction, "SET", lit
		}
		return
	}
	if m, ok := p.modes(true); ok {
		st.Kind, st.Tag, st.Modes, st.Session = SetTransaction, "SET", m, session
	}
}

// setVariable parses SET of one of the settings behind the transaction modes, with
// the same effect as SET TRANSACTION (or, for the default_ ones, SET SESSION
// CHARACTERISTICS AS TRANSACTION).
func (p *parser) setVariable(st *Statement) {
	name := p.text()
	session := len(name) > len("default_") && eqFold(name[:len("default_")], "default_")
	if session {
		name = name[len("default_"):]
	}
	p.advance()
	if p.isOp("=") {
		p.advance()
	} else if !p.accept("to") {
		return
	}
	var v string
	switch p.tok.kind {
	case tokWord, tokNumber:
		v = p.text()
		p.advance()
	case tokString:
		var ok bool
		if v, ok = p.sconst(); !ok {
			return
		}
	default:
		return
	}
	if !p.atEnd() {
		return
	}
	var m TxModes
	switch {
	case eqFold(name, "transaction_isolation"):
		switch {
		case eqFold(v, "serializable"):
			m.Isolation = Serializable
		case eqFold(v, "repeatable read"):
			m.Isolation = RepeatableRead
		case eqFold(v, "read committed"):
			m.Isolation = ReadCommitted
		case eqFold(v, "read uncommitted"):
			m.Isolation = ReadUncommitted
		default:
			return
		}
	case eqFold(name, "transaction_read_only"):
		if m.ReadOnly = parseBool(v); m.ReadOnly == Unset {
			return
		}
	case eqFold(name, "transaction_deferrable"):
		if m.Deferrable = parseBool(v); m.Deferrable == Unset {
			return
		}
	default:
		return
	}
	st.Kind, st.Tag, st.Modes, st.Session = SetTransaction, "SET", m, session
}

// parseBool reads a boolean setting as PostgreSQL's parse_bool does: any prefix of
// true, false, yes, no; on, off (at least two letters); 1, 0.
func parseBool(v string) Tristate {
	prefix := func(word string, min int) bool {
		return len(v) >= min && len(v) <= len(word) && eqFold(v, word[:len(v)])
	}
	switch {
	case prefix("true", 1), prefix("yes", 1), prefix("on", 2), v == "1":
		return Yes
	case prefix("false", 1), prefix("no", 1), prefix("off", 2), v == "0":
		return No
	}
	return Unset
}

// modes parses a transaction_mode_list — items separated by commas or spaces — and
// the end of the statement. The list may be empty unless required.
func (p *parser) modes(required bool) (TxModes, bool) {
	var m TxModes
	if p.atEnd() {
		return m, !required
	}
	for {
		if !p.mode(&m) {
			return m, false
		}
		if p.atEnd() {
			return m, true
		}
		if p.isSelf(',') {
			p.advance()
		}
	}
}

func (p *parser) mode(m *TxModes) bool {
	switch {
	case p.accept("isolation"):
		if !p.accept("level") {
			return false
		}
		switch {
		case p.accept("serializable"):
			m.Isolation = Serializable
		case p.accept("repeatable"):
			if !p.accept("read") {
				return false
			}
			m.Isolation = RepeatableRead
		case p.accept("read"):
			switch {
			case p.accept("committed"):
				m.Isolation = ReadCommitted
			case p.accept("uncommitted"):
				m.Isolation = ReadUncommitted
			default:
				return false
			}
		default:
			return false
		}
	case p.accept("read"):
		switch {
		case p.accept("only"):
			m.ReadOnly = Yes
		case p.accept("write"):
			m.ReadOnly = No
		default:
			return false
		}
	case p.accept("deferrable"):
		m.Deferrable = Yes
	case p.accept("not"):
		if !p.accept("deferrable") {
			return false
		}
		m.Deferrable = No
	default:
		return false
	}
	return true
}
