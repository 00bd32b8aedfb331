package sqllex

import "strings"

// tokKind is the kind of a lexical token, as PostgreSQL's scanner (scan.l) would see it.
type tokKind uint8

const (
	tokEOF    tokKind = iota // end of input (bad: inside an unterminated /* comment)
	tokWord                  // unquoted identifier or keyword
	tokIdent                 // "quoted" or U&"quoted" identifier
	tokString                // '…', E'…', U&'…', B'…', X'…', N'…' or $tag$…$tag$
	tokNumber                // numeric literal, with any trailing junk PostgreSQL rejects
	tokParam                 // $1
	tokOp                    // operator: a run of operator characters
	tokSelf                  // any other single character: ( ) , ; . [ ] : $ …
)

// String literal flavours (token.flav for tokString and tokIdent).
const (
	strStd      uint8 = iota // '…' (standard_conforming_strings on) or "…"
	strE                     // E'…': backslash escapes
	strUnicode               // U&'…' or U&"…"
	strBit                   // B'…' or X'…'
	strNational              // N'…'
	strDollar                // $tag$…$tag$
)

// token is one lexical token: src[start:end]. bad marks a quote or comment that runs
// unterminated to the end of the input, which PostgreSQL rejects.
type token struct {
	kind       tokKind
	flav       uint8
	bad        bool
	start, end int
}

// lexer produces the tokens of src, skipping whitespace and comments. It is a small
// value: copying it saves its position (for look-ahead).
type lexer struct {
	src string
	pos int
}

// Byte classes, as scan.l defines them.
const (
	cSpace      = 1 << iota // [ \t\n\r\f\v]; \v is whitespace from PostgreSQL 16 on
	cIdentStart             // [A-Za-z\200-\377_]
	cIdentCont              // [A-Za-z\200-\377_0-9$]
	cDolqCont               // [A-Za-z\200-\377_0-9]: a dollar-quote tag has no '$'
	cDigit                  // [0-9]
	cOp                     // [~!@#^&|`?+\-*/%<>=]
)

var class = func() (t [256]uint8) {
	for _, c := range []byte(" \t\n\r\f\v") {
		t[c] |= cSpace
	}
	for c := 0; c < 256; c++ {
		if 'a' <= c|0x20 && c|0x20 <= 'z' || c == '_' || c >= 0x80 {
			t[c] |= cIdentStart | cIdentCont | cDolqCont
		}
		if '0' <= c && c <= '9' {
			t[c] |= cDigit | cIdentCont | cDolqCont
		}
	}
	t['$'] |= cIdentCont
	for _, c := range []byte("~!@#^&|`?+-*/%<>=") {
		t[c] |= cOp
	}
	return t
}()

func isSpace(c byte) bool      { return class[c]&cSpace != 0 }
func isDigit(c byte) bool      { return class[c]&cDigit != 0 }
func isIdentStart(c byte) bool { return class[c]&cIdentStart != 0 }
func isIdentCont(c byte) bool  { return class[c]&cIdentCont != 0 }
func isDolqCont(c byte) bool   { return class[c]&cDolqCont != 0 }
func isOpChar(c byte) bool     { return class[c]&cOp != 0 }

// skip passes over whitespace and comments. It reports false when it ran into a /*
// comment that is not closed before the end of the input.
func (l *lexer) skip() bool {
	s := l.src
	for l.pos < len(s) {
		c := s[l.pos]
		switch {
		case isSpace(c):
			l.pos++
		case c == '-' && l.pos+1 < len(s) && s[l.pos+1] == '-':
			if i := strings.IndexAny(s[l.pos:], "\n\r"); i >= 0 {
				l.pos += i + 1
			} else {
				l.pos = len(s)
			}
		case c == '/' && l.pos+1 < len(s) && s[l.pos+1] == '*':
			if !l.blockComment() {
				return false
			}
		default:
			return true
		}
	}
	return true
}

// blockComment skips a /* comment starting at l.pos. Block comments nest.
func (l *lexer) blockComment() bool {
	s := l.src
	depth := 0
	i := l.pos + 2
	for i < len(s) {
		j := strings.IndexAny(s[i:], "*/")
		if j < 0 {
			break
		}
		i += j
		switch {
		case s[i] == '/' && i+1 < len(s) && s[i+1] == '*':
			depth++
			i += 2
		case s[i] == '*' && i+1 < len(s) && s[i+1] == '/':
			i += 2
			if depth == 0 {
				l.pos = i
				return true
			}
			depth--
		default:
			i++
		}
	}
	l.pos = len(s)
	return false
}

// next returns the next token.
func (l *lexer) next() token {
	if !l.skip() {
		return token{kind: tokEOF, bad: true, start: len(l.src), end: len(l.src)}
	}
	s := l.src
	start := l.pos
	if start >= len(s) {
		return token{kind: tokEOF, start: start, end: start}
	}
	c := s[start]
	switch {
	case isIdentStart(c):
		return l.word()
	case c == '\'':
		l.pos++
		return l.quoted(start, tokString, strStd)
	case c == '"':
		l.pos++
		return l.quoted(start, tokIdent, strStd)
	case c == '$':
		return l.dollar()
	case isDigit(c) || c == '.' && start+1 < len(s) && isDigit(s[start+1]):
		return l.number()
	case isOpChar(c):
		return l.operator()
	}
	l.pos++
	return token{kind: tokSelf, start: start, end: l.pos}
}

// word scans an identifier or keyword, or a string that starts with a one-letter
// prefix: E'…', B'…', X'…', N'…', U&'…', U&"…". The prefix counts only at the start
// of a token: "somee'x'" is the identifier somee followed by a string.
func (l *lexer) word() token {
	s := l.src
	start := l.pos
	i := start + 1
	for i < len(s) && isIdentCont(s[i]) {
		i++
	}
	if i == start+1 && i < len(s) {
		switch s[start] | 0x20 {
		case 'e':
			if s[i] == '\'' {
				l.pos = i + 1
				return l.quoted(start, tokString, strE)
			}
		case 'b', 'x':
			if s[i] == '\'' {
				l.pos = i + 1
				return l.quoted(start, tokString, strBit)
			}
		case 'n':
			if s[i] == '\'' {
				l.pos = i + 1
				return l.quoted(start, tokString, strNational)
			}
		case 'u':
			if s[i] == '&' && i+1 < len(s) {
				switch s[i+1] {
				case '\'':
					l.pos = i + 2
					return l.quoted(start, tokString, strUnicode)
				case '"':
					l.pos = i + 2
					return l.quoted(start, tokIdent, strUnicode)
				}
			}
		}
	}
	l.pos = i
	return token{kind: tokWord, start: start, end: i}
}

// quoted scans the rest of a quoted string or identifier whose opening quote ends
// just before l.pos. The closing quote is doubled to include it; in E'…' strings a
// backslash escapes the next byte. A string continues after a closing quote when
// whitespace containing a newline and then another quote follow ('a'\n'b' is 'ab'),
// in the same flavour: in E'a' followed by a newline and '\'x', the \' is an escape.
func (l *lexer) quoted(start int, kind tokKind, flav uint8) token {
	s := l.src
	q := byte('\'')
	stops := "'"
	if kind == tokIdent {
		q, stops = '"', `"`
	} else if flav == strE {
		stops = `'\`
	}
	i := l.pos
	for {
		j := strings.IndexAny(s[i:], stops)
		if j < 0 {
			l.pos = len(s)
			return token{kind: kind, flav: flav, bad: true, start: start, end: len(s)}
		}
		i += j
		if s[i] == '\\' {
			i += 2
			if i > len(s) {
				i = len(s)
			}
			continue
		}
		if i+1 < len(s) && s[i+1] == q {
			i += 2
			continue
		}
		i++
		if kind == tokString {
			if k := quoteContinue(s, i); k > 0 {
				i = k + 1
				continue
			}
		}
		l.pos = i
		return token{kind: kind, flav: flav, start: start, end: i}
	}
}

// quoteContinue reports the index of the quote that continues a string literal
// closed just before i, or 0 when none does. The separator is scan.l's
// {whitespace_with_newline}: spaces and -- comments containing at least one newline.
func quoteContinue(s string, i int) int {
	newline := false
	for i < len(s) {
		switch c := s[i]; {
		case c == '\n' || c == '\r':
			newline = true
			i++
		case isSpace(c):
			i++
		case c == '-' && i+1 < len(s) && s[i+1] == '-':
			j := strings.IndexAny(s[i:], "\n\r")
			if j < 0 {
				return 0
			}
			i += j
		case c == '\'' && newline:
			return i
		default:
			return 0
		}
	}
	return 0
}

// dollar scans a token starting with '$': a parameter ($1), a dollar-quoted string
// ($$…$$, $tag$…$tag$; the tag is an identifier without '$' and does not start with
// a digit), or a lone '$'.
func (l *lexer) dollar() token {
	s := l.src
	start := l.pos
	i := start + 1
	if i < len(s) && isDigit(s[i]) {
		for i < len(s) && isDigit(s[i]) {
			i++
		}
		i = junk(s, i)
		l.pos = i
		return token{kind: tokParam, start: start, end: i}
	}
	if i < len(s) && isIdentStart(s[i]) {
		for i < len(s) && isDolqCont(s[i]) {
			i++
		}
	}
	if i >= len(s) || s[i] != '$' {
		// "$" or "$abc" not followed by "$": the "$" alone (a syntax error).
		l.pos = start + 1
		return token{kind: tokSelf, start: start, end: start + 1}
	}
	tag := s[start : i+1]
	body := i + 1
	j := strings.Index(s[body:], tag)
	if j < 0 {
		l.pos = len(s)
		return token{kind: tokString, flav: strDollar, bad: true, start: start, end: len(s)}
	}
	l.pos = body + j + len(tag)
	return token{kind: tokString, flav: strDollar, start: start, end: l.pos}
}

// number scans a numeric literal: digits, a fraction, an exponent. Identifier
// characters right after it are taken into the token, as PostgreSQL 15 and later
// reject them as "trailing junk" (so 1e'x' holds no E string).
func (l *lexer) number() token {
	s := l.src
	start := l.pos
	i := start
	digits := func() {
		for i < len(s) && (isDigit(s[i]) || s[i] == '_') {
			i++
		}
	}
	digits()
	if i < len(s) && s[i] == '.' && !(i+1 < len(s) && s[i+1] == '.') {
		i++
		digits()
	}
	if i < len(s) && s[i]|0x20 == 'e' {
		j := i + 1
		if j < len(s) && (s[j] == '+' || s[j] == '-') {
			j++
		}
		if j < len(s) && isDigit(s[j]) {
			i = j
			digits()
		}
	}
	i = junk(s, i)
	l.pos = i
	return token{kind: tokNumber, start: start, end: i}
}

// junk extends a number or parameter ending at i over an identifier that follows it.
func junk(s string, i int) int {
	if i < len(s) && isIdentStart(s[i]) {
		for i < len(s) && isIdentCont(s[i]) {
			i++
		}
	}
	return i
}

// operator scans a run of operator characters, stopping before a comment start.
func (l *lexer) operator() token {
	s := l.src
	start := l.pos
	i := start + 1
	for i < len(s) && isOpChar(s[i]) {
		if (s[i] == '-' && s[i-1] == '-' || s[i] == '*' && s[i-1] == '/') && i-1 > start {
			i--
			break
		}
		i++
	}
	l.pos = i
	return token{kind: tokOp, start: start, end: i}
}
