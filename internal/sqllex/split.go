package sqllex

import "strings"

// Split splits a simple-protocol query string into its statements and classifies
// each one.
//
// The string is cut at every top-level ';': one outside quotes, comments,
// parentheses (CREATE RULE … DO (a; b)) and the BEGIN ATOMIC … END body of a
// CREATE [OR REPLACE] FUNCTION/PROCEDURE. Every piece is returned, in order, including
// empty ones, so there is always one more Statement than separators and joining the
// Texts with ";" gives sql back: "BEGIN;" is [BEGIN, ""] and "" is [""]. Pieces
// holding only whitespace and comments have Kind Empty. PostgreSQL drops them: it
// answers EmptyQueryResponse only when every piece is Empty, and nothing for an empty
// piece among real statements.
//
// A quote, comment or BEGIN ATOMIC body left open runs to the end of sql, as one
// statement that the server will reject with a syntax error.
func Split(sql string) []Statement {
	if strings.IndexByte(sql, ';') < 0 {
		return []Statement{Classify(sql)}
	}
	// At most one piece per ';' plus one; bounded so that a long function body full
	// of quoted ';' does not reserve room for pieces that are not there.
	out := make([]Statement, 0, min(strings.Count(sql, ";")+1, 16))
	lx := lexer{src: sql}
	start := 0
	for {
		t := lx.statementEnd()
		if t.kind == tokEOF {
			return append(out, classifyAt(sql, start, len(sql)))
		}
		out = append(out, classifyAt(sql, start, t.start))
		start = t.end
	}
}

// statementEnd advances past the rest of the statement at l.pos and returns the ';'
// that ends it at the top level, or the EOF token when none does.
func (l *lexer) statementEnd() token {
	var sp splitter
	for {
		t := l.next()
		switch t.kind {
		case tokEOF:
			return t
		case tokWord:
			sp.word(l.src[t.start:t.end])
			continue
		case tokSelf:
			switch l.src[t.start] {
			case '(':
				sp.paren++
			case ')':
				if sp.paren > 0 {
					sp.paren--
				}
			case ';':
				if sp.paren == 0 && sp.begin == 0 {
					return t
				}
			}
		}
		sp.beginPending = false
	}
}

func classifyAt(sql string, start, end int) Statement {
	st := Classify(sql[start:end])
	st.Start, st.End = start, end
	return st
}

// splitter holds psql's state for finding the end of a statement (psqlscan.l):
// parenthesis depth, and whether the statement is CREATE [OR REPLACE]
// FUNCTION/PROCEDURE with a BEGIN ATOMIC … END body open, counting the CASE … END
// inside it.
type splitter struct {
	paren  int
	begin  int // open BEGIN ATOMIC bodies and CASE expressions inside them
	nwords int
	words  [4]byte // first letters of the first four words, if create/or/replace/function/procedure
	// beginPending: the previous token was BEGIN at depth 0 of a routine. psql counts
	// every such BEGIN; only BEGIN ATOMIC opens a body, so a function named "begin"
	// does not hide the statements after it.
	beginPending bool
}

// word feeds the splitter an unquoted word.
func (sp *splitter) word(w string) {
	pending := sp.beginPending
	sp.beginPending = false
	if sp.nwords < len(sp.words) {
		if eqFold(w, "create") || eqFold(w, "function") || eqFold(w, "procedure") ||
			eqFold(w, "or") || eqFold(w, "replace") {
			sp.words[sp.nwords] = w[0] | 0x20
		}
	}
	sp.nwords++
	if sp.paren != 0 || !sp.routine() {
		return
	}
	switch {
	case pending && eqFold(w, "atomic"):
		sp.begin++
	case eqFold(w, "begin"):
		sp.beginPending = true
	case eqFold(w, "case"):
		if sp.begin > 0 {
			sp.begin++
		}
	case eqFold(w, "end"):
		if sp.begin > 0 {
			sp.begin--
		}
	}
}

// routine reports whether the statement began CREATE [OR REPLACE] FUNCTION/PROCEDURE.
func (sp *splitter) routine() bool {
	w := &sp.words
	return w[0] == 'c' && (w[1] == 'f' || w[1] == 'p' ||
		w[1] == 'o' && w[2] == 'r' && (w[3] == 'f' || w[3] == 'p'))
}

// eqFold reports whether s equals the ASCII word kw, ignoring ASCII case only, as
// PostgreSQL folds keywords (strings.EqualFold would also match the Kelvin sign).
func eqFold(s, kw string) bool {
	if len(s) != len(kw) {
		return false
	}
	for i := 0; i < len(s); i++ {
		c, k := s[i], kw[i]
		if c == k {
			continue
		}
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if 'A' <= k && k <= 'Z' {
			k += 'a' - 'A'
		}
		if c != k {
			return false
		}
	}
	return true
}
