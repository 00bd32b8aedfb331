package sqllex

import (
	"strings"
	"unicode/utf8"
)

// maxIdentLen is NAMEDATALEN-1: PostgreSQL truncates longer identifiers.
const maxIdentLen = 63

// colID parses a ColId — an unquoted identifier that is not a reserved keyword, or a
// quoted one — and moves past it.
func (p *parser) colID() (Ident, bool) {
	switch p.tok.kind {
	case tokWord:
		w := p.text()
		if reserved(w) {
			return Ident{}, false
		}
		p.advance()
		return Ident{Raw: w, Name: truncateIdent(lowerASCII(w))}, true
	case tokIdent:
		return p.quotedIdent()
	}
	return Ident{}, false
}

// quotedIdent parses a quoted identifier, "…" or U&"…" [UESCAPE 'c'], and moves past it.
func (p *parser) quotedIdent() (Ident, bool) {
	t := p.tok
	if t.kind != tokIdent || t.bad {
		return Ident{}, false
	}
	text := p.text()
	body := text[strings.IndexByte(text, '"')+1 : len(text)-1]
	name := undouble(body, '"')
	p.advance()
	if t.flav == strUnicode {
		esc, ok := p.uescape()
		if !ok {
			return Ident{}, false
		}
		if name, ok = unicodeUnescape(name, esc); !ok {
			return Ident{}, false
		}
	}
	if name == "" || strings.IndexByte(name, 0) >= 0 {
		return Ident{}, false // zero-length delimited identifier
	}
	return Ident{Raw: p.lx.src[t.start:p.prevEnd], Name: truncateIdent(name)}, true
}

// sconst parses a string constant — '…', E'…', U&'…' [UESCAPE 'c'] or $$…$$ — and
// moves past it, returning its value.
func (p *parser) sconst() (string, bool) {
	t := p.tok
	if t.kind != tokString {
		return "", false
	}
	v, ok := stringValue(p.text(), t)
	if !ok {
		return "", false
	}
	p.advance()
	if t.flav == strUnicode {
		esc, ok := p.uescape()
		if !ok {
			return "", false
		}
		// stringValue undid the quoting; now the Unicode escapes.
		if v, ok = unicodeUnescape(v, esc); !ok {
			return "", false
		}
	}
	return v, valid(v)
}

// uescape parses an optional UESCAPE 'c' after a U& literal and returns the escape
// character, '\' by default.
func (p *parser) uescape() (byte, bool) {
	if !p.accept("uescape") {
		return '\\', true
	}
	if p.tok.kind != tokString {
		return 0, false
	}
	v, ok := stringValue(p.text(), p.tok)
	if !ok || p.tok.flav == strUnicode || len(v) != 1 {
		return 0, false
	}
	p.advance()
	c := v[0]
	if isHex(c) || c == '+' || c == '\'' || c == '"' || isSpace(c) {
		return 0, false
	}
	return c, true
}

// stringValue returns the value of string literal token t, whose text is text.
// U&'…' strings come back with their Unicode escapes not yet processed; B'…', X'…'
// and N'…' are not string constants and give false.
func stringValue(text string, t token) (string, bool) {
	if t.kind != tokString || t.bad {
		return "", false
	}
	switch t.flav {
	case strDollar:
		n := strings.IndexByte(text[1:], '$') + 2 // the tag with both '$'
		return text[n : len(text)-n], true
	case strStd, strUnicode:
		return quotedBody(text, false)
	case strE:
		return quotedBody(text, true)
	}
	return "", false
}

// quotedBody returns the value of a single-quoted literal (after any prefix),
// joining its continuation segments, undoing doubled quotes and, when escapes,
// backslash escapes.
func quotedBody(text string, escapes bool) (string, bool) {
	i := strings.IndexByte(text, '\'') + 1
	// Fast path: one segment, nothing to undo.
	if j := strings.IndexAny(text[i:], `'\`); j == len(text)-i-1 {
		return text[i : len(text)-1], true
	}
	var b strings.Builder
	for {
		j := strings.IndexAny(text[i:], `'\`)
		if j < 0 {
			return "", false
		}
		if text[i+j] == '\\' && !escapes {
			b.WriteString(text[i : i+j+1])
			i += j + 1
			continue
		}
		b.WriteString(text[i : i+j])
		i += j
		if text[i] == '\\' {
			n, ok := unescapeE(&b, text[i:])
			if !ok {
				return "", false
			}
			i += n
			continue
		}
		if i+1 < len(text) && text[i+1] == '\'' {
			b.WriteByte('\'')
			i += 2
			continue
		}
		k := quoteContinue(text, i+1)
		if k == 0 {
			return b.String(), true
		}
		i = k + 1
	}
}

// unescapeE writes the value of the backslash escape at the start of s to b and
// returns its length, as PostgreSQL reads E'…' strings.
func unescapeE(b *strings.Builder, s string) (int, bool) {
	if len(s) < 2 {
		return 0, false
	}
	switch c := s[1]; c {
	case 'b':
		b.WriteByte('\b')
	case 'f':
		b.WriteByte('\f')
	case 'n':
		b.WriteByte('\n')
	case 'r':
		b.WriteByte('\r')
	case 't':
		b.WriteByte('\t')
	case '0', '1', '2', '3', '4', '5', '6', '7':
		v, n := 0, 1
		for n < 4 && n < len(s) && '0' <= s[n] && s[n] <= '7' {
			v = v*8 + int(s[n]-'0')
			n++
		}
		b.WriteByte(byte(v))
		return n, true
	case 'x':
		v, n := 0, 2
		for n < 4 && n < len(s) && isHex(s[n]) {
			v = v*16 + hexVal(s[n])
			n++
		}
		if n == 2 {
			b.WriteByte('x')
		} else {
			b.WriteByte(byte(v))
		}
		return n, true
	case 'u', 'U':
		digits := 4
		if c == 'U' {
			digits = 8
		}
		r, ok := hexRune(s[2:], digits)
		if !ok {
			return 0, false
		}
		n := 2 + digits
		if isHighSurrogate(r) {
			// A high surrogate must be followed by an escaped low one.
			if len(s) < n+2 || s[n] != '\\' || s[n+1] != 'u' && s[n+1] != 'U' {
				return 0, false
			}
			d2 := 4
			if s[n+1] == 'U' {
				d2 = 8
			}
			lo, ok := hexRune(s[n+2:], d2)
			if !ok || !isLowSurrogate(lo) {
				return 0, false
			}
			r = (r-0xD800)<<10 + (lo - 0xDC00) + 0x10000
			n += 2 + d2
		}
		if !validRune(r) {
			return 0, false
		}
		b.WriteRune(r)
		return n, true
	default:
		b.WriteByte(c)
	}
	return 2, true
}

// unicodeUnescape processes the escapes of a U& literal whose quoting is undone: esc
// esc is esc, esc followed by 4 hex digits or by + and 6 hex digits is a code point.
func unicodeUnescape(s string, esc byte) (string, bool) {
	if strings.IndexByte(s, esc) < 0 {
		return s, true
	}
	var b strings.Builder
	var hi rune // pending high surrogate
	for i := 0; i < len(s); {
		if s[i] != esc {
			if hi != 0 {
				return "", false
			}
			b.WriteByte(s[i])
			i++
			continue
		}
		if i+1 < len(s) && s[i+1] == esc {
			if hi != 0 {
				return "", false
			}
			b.WriteByte(esc)
			i += 2
			continue
		}
		var r rune
		var ok bool
		if i+1 < len(s) && s[i+1] == '+' {
			r, ok = hexRune(s[i+2:], 6)
			i += 8
		} else {
			r, ok = hexRune(s[i+1:], 4)
			i += 5
		}
		switch {
		case !ok:
			return "", false
		case hi != 0:
			if !isLowSurrogate(r) {
				return "", false
			}
			b.WriteRune((hi-0xD800)<<10 + (r - 0xDC00) + 0x10000)
			hi = 0
		case isHighSurrogate(r):
			hi = r
		case !validRune(r):
			return "", false
		default:
			b.WriteRune(r)
		}
	}
	if hi != 0 {
		return "", false
	}
	return b.String(), true
}

func hexRune(s string, digits int) (rune, bool) {
	if len(s) < digits {
		return 0, false
	}
	var r rune
	for i := 0; i < digits; i++ {
		if !isHex(s[i]) {
			return 0, false
		}
		r = r<<4 | rune(hexVal(s[i]))
	}
	return r, true
}

func isHex(c byte) bool { return isDigit(c) || 'a' <= c|0x20 && c|0x20 <= 'f' }

func hexVal(c byte) int {
	if isDigit(c) {
		return int(c - '0')
	}
	return int(c|0x20-'a') + 10
}

func isHighSurrogate(r rune) bool { return 0xD800 <= r && r <= 0xDBFF }
func isLowSurrogate(r rune) bool  { return 0xDC00 <= r && r <= 0xDFFF }

// validRune reports a code point PostgreSQL accepts in an escape: not 0, not a
// surrogate, at most U+10FFFF.
func validRune(r rune) bool {
	return r != 0 && !isHighSurrogate(r) && !isLowSurrogate(r) && r <= utf8.MaxRune
}

// valid reports whether a literal's value is text PostgreSQL accepts in a UTF-8
// database: valid UTF-8 without NUL.
func valid(s string) bool { return utf8.ValidString(s) && strings.IndexByte(s, 0) < 0 }

// undouble replaces each doubled q in s by one.
func undouble(s string, q byte) string {
	if strings.IndexByte(s, q) < 0 {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		b.WriteByte(s[i])
		if s[i] == q && i+1 < len(s) && s[i+1] == q {
			i++
		}
	}
	return b.String()
}

// lowerASCII lower-cases the ASCII letters of s, as PostgreSQL downcases unquoted
// identifiers in UTF-8; it allocates only when s has an upper-case letter.
func lowerASCII(s string) string {
	i := 0
	for i < len(s) && !('A' <= s[i] && s[i] <= 'Z') {
		i++
	}
	if i == len(s) {
		return s
	}
	b := []byte(s)
	for ; i < len(b); i++ {
		if 'A' <= b[i] && b[i] <= 'Z' {
			b[i] += 'a' - 'A'
		}
	}
	return string(b)
}

// truncateIdent cuts s to maxIdentLen bytes at a UTF-8 character boundary.
func truncateIdent(s string) string {
	if len(s) <= maxIdentLen {
		return s
	}
	n := maxIdentLen
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}
