package sqllex

import "strings"

// CommandKind says what a piece of a psql script is.
type CommandKind uint8

const (
	// SQLCommand is one SQL statement.
	SQLCommand CommandKind = iota
	// MetaCommand is a psql backslash command (\connect, \restrict, …): the rest of its
	// line.
	MetaCommand
)

// Command is one piece of a psql script: a statement or a backslash command.
type Command struct {
	Kind CommandKind
	// Text is the statement from its first token up to (not including) the ';' that
	// ends it, or the backslash command's line without its line break.
	Text string
	// Start is the offset of Text in the script; Line is the 1-based line it starts on.
	Start, Line int
	// Copy reports a COPY … FROM STDIN statement; CopyData is then the data that
	// follows it in the script, line by line up to (not including) the "\." line,
	// and CopyLine the line the data starts on.
	Copy     bool
	CopyData string
	CopyLine int
}

// Script splits a script as psql reads a file given to -f: SQL statements ended by a
// top-level ';' (as Split cuts them; pieces holding only whitespace and comments are
// dropped), backslash commands where a statement would start, and after a COPY …
// FROM STDIN statement its inline data up to a line holding only "\.". The data of a
// COPY left without its "\." runs to the end of the script. A statement or comment
// left open at the end is returned as it is, for the server to reject.
func Script(src string) []Command {
	var out []Command
	lines := lineCounter{src: src, line: 1}
	pos := 0
	for {
		lx := lexer{src: src, pos: pos}
		if !lx.skip() { // an unterminated /* comment: the server rejects it
			start := len(src) - len(strings.TrimLeft(src[pos:], " \t\n\r\f\v"))
			return append(out, Command{Kind: SQLCommand, Text: src[start:], Start: start, Line: lines.at(start)})
		}
		if lx.pos >= len(src) {
			return out
		}
		start := lx.pos
		if src[start] == '\\' {
			end := lineEnd(src, start)
			out = append(out, Command{Kind: MetaCommand, Text: strings.TrimRight(src[start:end], "\r"),
				Start: start, Line: lines.at(start)})
			pos = end
			continue
		}
		t := lx.statementEnd()
		cmd := Command{Kind: SQLCommand, Text: src[start:t.start], Start: start, Line: lines.at(start)}
		pos = t.end
		if cmd.Text == "" { // a lone ';'
			continue
		}
		if isCopyFromStdin(cmd.Text) {
			cmd.Copy = true
			dataStart := min(lineEnd(src, pos)+1, len(src))
			dataEnd, next := copyEnd(src, dataStart)
			cmd.CopyData, cmd.CopyLine = src[dataStart:dataEnd], lines.at(dataStart)
			pos = next
		}
		out = append(out, cmd)
	}
}

// lineEnd returns the offset of the first '\n' at or after i, or len(s).
func lineEnd(s string, i int) int {
	if j := strings.IndexByte(s[i:], '\n'); j >= 0 {
		return i + j
	}
	return len(s)
}

// copyEnd finds the "\." line that ends COPY data starting at i: it returns where the
// data ends and where the script goes on after that line.
func copyEnd(s string, i int) (end, next int) {
	for i < len(s) {
		e := lineEnd(s, i)
		if line := strings.TrimRight(s[i:e], "\r"); line == `\.` {
			return i, min(e+1, len(s))
		}
		i = e + 1
	}
	return len(s), len(s)
}

// isCopyFromStdin reports whether stmt is COPY … FROM STDIN.
func isCopyFromStdin(stmt string) bool {
	lx := lexer{src: stmt}
	t := lx.next()
	if t.kind != tokWord || !eqFold(stmt[t.start:t.end], "copy") {
		return false
	}
	depth, from := 0, false
	for t = lx.next(); t.kind != tokEOF; t = lx.next() {
		switch {
		case t.kind == tokSelf && stmt[t.start] == '(':
			depth++
		case t.kind == tokSelf && stmt[t.start] == ')':
			depth--
		case t.kind == tokWord && depth == 0:
			w := stmt[t.start:t.end]
			if from && eqFold(w, "stdin") {
				return true
			}
			from = eqFold(w, "from")
			continue
		}
		from = false
	}
	return false
}

// lineCounter turns increasing offsets into 1-based line numbers in linear time.
type lineCounter struct {
	src  string
	pos  int
	line int
}

func (c *lineCounter) at(off int) int {
	c.line += strings.Count(c.src[c.pos:off], "\n")
	c.pos = off
	return c.line
}
