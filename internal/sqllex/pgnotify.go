package sqllex

import "strconv"

// PgNotifyCall is a statement that is a call of pg_notify and nothing else:
//
//	SELECT [pg_catalog.]pg_notify(channel, payload) [;]
//
// each argument a string constant or a parameter ($n), either optionally cast with
// ::text.
type PgNotifyCall struct {
	Channel, Payload string // the constants' values
	// ChannelParam, PayloadParam are the parameters' numbers (1-based); 0: a constant.
	ChannelParam, PayloadParam int
}

// PgNotify reports whether sql is a PgNotifyCall, and which.
func PgNotify(sql string) (PgNotifyCall, bool) {
	var call PgNotifyCall
	p := parser{lx: lexer{src: sql}}
	p.advance()
	if !p.accept("select") {
		return call, false
	}
	if p.is("pg_catalog") {
		p.advance()
		if !p.isSelf('.') {
			return call, false
		}
		p.advance()
	}
	if !p.accept("pg_notify") || !p.isSelf('(') {
		return call, false
	}
	p.advance()
	if !p.notifyArg(&call.Channel, &call.ChannelParam) || !p.isSelf(',') {
		return call, false
	}
	p.advance()
	if !p.notifyArg(&call.Payload, &call.PayloadParam) || !p.isSelf(')') {
		return call, false
	}
	p.advance()
	return call, p.atEnd()
}

// notifyArg parses a string constant or a parameter, optionally cast to text.
func (p *parser) notifyArg(lit *string, param *int) bool {
	if p.tok.kind == tokParam {
		n, err := strconv.Atoi(p.text()[1:])
		if err != nil || n < 1 {
			return false
		}
		*param = n
		p.advance()
	} else {
		v, ok := p.sconst()
		if !ok {
			return false
		}
		*lit = v
	}
	if p.isSelf(':') {
		p.advance()
		if !p.isSelf(':') {
			return false
		}
		p.advance()
		return p.accept("text")
	}
	return true
}
