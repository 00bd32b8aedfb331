package migrations

import "strings"

// statement is one statement of a migration file and the line it starts on.
type statement struct {
	text string
	line int
}

// split cuts SQL into statements at top-level semicolons, the way psql does: it skips
// quoted strings ('…', E'…', "…", $tag$…$tag$) and comments (--, nested /* */), and
// keeps a CREATE FUNCTION's BEGIN ATOMIC … END body (and CASE … END) together. It is
// used only to locate a failing statement, so it favours simplicity over covering every
// corner of the grammar.
func split(sql string) []statement {
	var out []statement
	start, line, startLine := -1, 1, 0
	words, depth := 0, 0
	emit := func(end int) {
		if start >= 0 {
			if text := strings.TrimSpace(sql[start:end]); text != "" {
				out = append(out, statement{text: text, line: startLine})
			}
		}
		start, words, depth = -1, 0, 0
	}
	begin := func(i int) {
		if start < 0 {
			start, startLine = i, line
		}
	}
	for i := 0; i < len(sql); {
		c := sql[i]
		switch {
		case c == '\n':
			line++
			i++
		case c == ' ' || c == '\t' || c == '\r' || c == '\f':
			i++
		case c == '-' && strings.HasPrefix(sql[i:], "--"):
			for i < len(sql) && sql[i] != '\n' {
				i++
			}
		case c == '/' && strings.HasPrefix(sql[i:], "/*"):
			i, line = skipBlockComment(sql, i, line)
		case c == ';':
			if depth > 0 {
				i++
				continue
			}
			emit(i)
			i++
		case c == '\'' || c == '"':
			begin(i)
			escapes := c == '\'' && i > 0 && (sql[i-1] == 'e' || sql[i-1] == 'E') &&
				(i < 2 || !isIdent(sql[i-2]))
			i, line = skipQuoted(sql, i, line, c, escapes)
		case c == '$' && (i == 0 || !isIdent(sql[i-1])):
			begin(i)
			if tag, ok := dollarTag(sql[i:]); ok {
				end := strings.Index(sql[i+len(tag):], tag)
				if end < 0 {
					end = len(sql) - i - len(tag)
				} else {
					end += len(tag)
				}
				line += strings.Count(sql[i:i+len(tag)+end], "\n")
				i += len(tag) + end
			} else {
				i++
			}
		case isIdentStart(c):
			begin(i)
			j := i
			for j < len(sql) && isIdent(sql[j]) {
				j++
			}
			words++
			switch strings.ToUpper(sql[i:j]) {
			case "BEGIN", "CASE":
				if words > 1 {
					depth++
				}
			case "END":
				if depth > 0 {
					depth--
				}
			}
			i = j
		default:
			begin(i)
			i++
		}
	}
	emit(len(sql))
	return out
}

func skipBlockComment(sql string, i, line int) (int, int) {
	depth := 0
	for i < len(sql) {
		switch {
		case strings.HasPrefix(sql[i:], "/*"):
			depth++
			i += 2
		case strings.HasPrefix(sql[i:], "*/"):
			depth--
			i += 2
			if depth == 0 {
				return i, line
			}
		default:
			if sql[i] == '\n' {
				line++
			}
			i++
		}
	}
	return i, line
}

// skipQuoted skips the quoted token at sql[i] (quote q), doubled quotes and, with
// escapes, backslash escapes included.
func skipQuoted(sql string, i, line int, q byte, escapes bool) (int, int) {
	for i++; i < len(sql); i++ {
		switch sql[i] {
		case '\n':
			line++
		case '\\':
			if escapes {
				i++
			}
		case q:
			if i+1 < len(sql) && sql[i+1] == q {
				i++
				continue
			}
			return i + 1, line
		}
	}
	return i, line
}

// dollarTag returns the $tag$ opening s, if s opens a dollar-quoted string.
func dollarTag(s string) (string, bool) {
	for j := 1; j < len(s); j++ {
		switch {
		case s[j] == '$':
			return s[:j+1], true
		case j == 1 && !isIdentStart(s[j]), j > 1 && !isIdent(s[j]):
			return "", false
		}
	}
	return "", false
}

func isIdentStart(c byte) bool {
	return c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= 0x80
}

func isIdent(c byte) bool { return isIdentStart(c) || c >= '0' && c <= '9' || c == '$' }
