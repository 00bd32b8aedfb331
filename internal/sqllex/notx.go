package sqllex

// The statements PostgreSQL refuses inside a transaction block: each function parses
// what follows its first keyword and returns the command as PostgreSQL names it in
// its error (PreventInTransactionBlock), or "" when the statement may run in one.
// Checked against PostgreSQL 15 (see TestServerNoTxBlock).
//
// Not detectable from the text alone, so left to the server: CLUSTER or REINDEX
// TABLE/INDEX of a partitioned table, and DROP SUBSCRIPTION of a subscription
// without a replication slot, which PostgreSQL does allow.

// create follows CREATE.
func (p *parser) create() string {
	switch {
	case p.is("database"):
		return "CREATE DATABASE"
	case p.is("tablespace"):
		return "CREATE TABLESPACE"
	case p.accept("subscription"):
		return p.createSubscription()
	}
	p.accept("unique")
	if p.accept("index") && p.is("concurrently") {
		return "CREATE INDEX CONCURRENTLY"
	}
	return ""
}

// createSubscription: CREATE SUBSCRIPTION refuses a transaction block when it creates
// a replication slot: WITH (create_slot), which defaults to the value of connect,
// which defaults to true.
func (p *parser) createSubscription() string {
	connect, slot := Unset, Unset
	valid := true
	p.withOptions(func(name string, v Tristate) {
		switch name {
		case "connect":
			connect = v
		case "create_slot":
			slot = v
		default:
			return
		}
		valid = valid && v != Unset
	})
	if !valid || connect == No && slot == Yes { // an error before the check
		return ""
	}
	if slot == No || slot == Unset && connect == No {
		return ""
	}
	return "CREATE SUBSCRIPTION ... WITH (create_slot = true)"
}

// drop follows DROP.
func (p *parser) drop() string {
	switch {
	case p.is("database"):
		return "DROP DATABASE"
	case p.is("tablespace"):
		return "DROP TABLESPACE"
	case p.is("subscription"):
		// Refused only when the subscription has a replication slot: always, unless
		// its slot_name was set to NONE.
		return "DROP SUBSCRIPTION"
	case p.accept("index") && p.is("concurrently"):
		return "DROP INDEX CONCURRENTLY"
	}
	return ""
}

// alter follows ALTER.
func (p *parser) alter() string {
	switch {
	case p.is("system"):
		return "ALTER SYSTEM"
	case p.accept("database"):
		return p.alterDatabase()
	case p.accept("table"):
		return p.alterTable()
	case p.accept("subscription"):
		return p.alterSubscription()
	}
	return ""
}

// alterDatabase: ALTER DATABASE name SET TABLESPACE ts, or the same as an option:
// ALTER DATABASE name [WITH] TABLESPACE [=] ts (alone: with other options it is an
// error before the check).
func (p *parser) alterDatabase() string {
	if _, ok := p.colID(); !ok {
		return ""
	}
	if p.accept("set") {
		if !p.accept("tablespace") {
			return ""
		}
		if _, ok := p.colID(); !ok || !p.atEnd() {
			return ""
		}
		return "ALTER DATABASE SET TABLESPACE"
	}
	p.accept("with")
	if !p.accept("tablespace") {
		return ""
	}
	if p.isOp("=") {
		p.advance()
	}
	if p.tok.kind == tokEOF || p.atEnd() {
		return ""
	}
	p.advance()
	if !p.atEnd() {
		return ""
	}
	return "ALTER DATABASE SET TABLESPACE"
}

// alterTable: ALTER TABLE … DETACH PARTITION name CONCURRENTLY. CONCURRENTLY cannot
// be a table name, so it ends the statement only in this form.
func (p *parser) alterTable() string {
	detach, last := false, false
	for p.tok.kind != tokEOF && !p.atEnd() {
		if p.is("detach") && p.peekIs("partition") {
			detach = true
		}
		last = p.is("concurrently")
		p.advance()
	}
	if detach && last && p.atEnd() {
		return "ALTER TABLE ... DETACH CONCURRENTLY"
	}
	return ""
}

// alterSubscription: REFRESH PUBLICATION always refuses a transaction block; SET,
// ADD and DROP PUBLICATION do unless WITH (refresh = false).
func (p *parser) alterSubscription() string {
	if _, ok := p.colID(); !ok {
		return ""
	}
	if p.accept("refresh") {
		if p.is("publication") {
			return "ALTER SUBSCRIPTION ... REFRESH"
		}
		return ""
	}
	if !p.accept("set") && !p.accept("add") && !p.accept("drop") || !p.is("publication") {
		return ""
	}
	refresh := Yes
	p.withOptions(func(name string, v Tristate) {
		if name == "refresh" {
			refresh = v
		}
	})
	if refresh != Yes {
		return ""
	}
	return "ALTER SUBSCRIPTION with refresh"
}

// cluster: CLUSTER without a table name, [VERBOSE] or (options).
func (p *parser) cluster() string {
	if !p.accept("verbose") && p.isSelf('(') && !p.options(nil) {
		return ""
	}
	if !p.atEnd() {
		return ""
	}
	return "CLUSTER"
}

// reindex: REINDEX [(options)] {INDEX|TABLE|SCHEMA|DATABASE|SYSTEM} [CONCURRENTLY]
// name. CONCURRENTLY (also as an option) is checked first, then SCHEMA, DATABASE
// and SYSTEM.
func (p *parser) reindex() string {
	concurrently := false
	if p.isSelf('(') && !p.options(func(name string, v Tristate) {
		if name == "concurrently" {
			concurrently = v == Yes
		}
	}) {
		return ""
	}
	var cmd string
	switch {
	case p.is("index"), p.is("table"):
	case p.is("schema"):
		cmd = "REINDEX SCHEMA"
	case p.is("database"):
		cmd = "REINDEX DATABASE"
	case p.is("system"):
		cmd = "REINDEX SYSTEM"
	default:
		return ""
	}
	p.advance()
	if concurrently || p.is("concurrently") {
		return "REINDEX CONCURRENTLY"
	}
	return cmd
}

// withOptions finds WITH ( … ) among the rest of the statement's tokens and reads its
// options.
func (p *parser) withOptions(f func(name string, v Tristate)) {
	for p.tok.kind != tokEOF && !p.atEnd() {
		if p.is("with") {
			p.advance()
			if p.isSelf('(') {
				p.options(f)
				return
			}
			continue
		}
		p.advance()
	}
}

// options parses a parenthesised option list at the current '(' — ( name [=] [value]
// [, …] ) — calling f, when not nil, with each option's name (lower-cased unless
// quoted) and its value as a boolean: Yes or No as PostgreSQL's defGetBoolean reads
// it (no value is Yes), Unset when it is not a boolean.
func (p *parser) options(f func(name string, v Tristate)) bool {
	if !p.isSelf('(') {
		return false
	}
	p.advance()
	for {
		var name string
		switch p.tok.kind {
		case tokWord:
			name = lowerASCII(p.text())
			p.advance()
		case tokIdent:
			id, ok := p.quotedIdent()
			if !ok {
				return false
			}
			name = id.Name
		default:
			return false
		}
		if p.isOp("=") {
			p.advance()
		}
		v := Yes
		if !p.isSelf(',') && !p.isSelf(')') {
			v = p.boolValue()
			p.advance()
			for !p.isSelf(',') && !p.isSelf(')') {
				if p.tok.kind == tokEOF {
					return false
				}
				v = Unset
				p.advance()
			}
		}
		if f != nil {
			f(name, v)
		}
		if p.isSelf(')') {
			p.advance()
			return true
		}
		p.advance()
	}
}

// boolValue reads the current token as defGetBoolean would: true/on/1 and
// false/off/0, as words or strings.
func (p *parser) boolValue() Tristate {
	var s string
	switch p.tok.kind {
	case tokWord, tokNumber:
		s = p.text()
	case tokString:
		v, ok := stringValue(p.text(), p.tok)
		if !ok {
			return Unset
		}
		s = v
	default:
		return Unset
	}
	switch {
	case eqFold(s, "true"), eqFold(s, "on"), s == "1":
		return Yes
	case eqFold(s, "false"), eqFold(s, "off"), s == "0":
		return No
	}
	return Unset
}

func (p *parser) isOp(op string) bool { return p.tok.kind == tokOp && p.text() == op }
