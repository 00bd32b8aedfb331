package migrations

import (
	"bytes"
	"fmt"
	"regexp"
	"slices"
	"strings"

	"github.com/pgtestproxy/pgtestproxy/internal/sqllex"
)

// upPart is what one migration file applies: its up section, cut into statements.
type upPart struct {
	body []byte    // the up section as written (what the hash covers)
	cmds []command // its statements; Line and Start refer to the whole file
	noTx bool      // the file asks to run outside a transaction
}

var (
	gooseRE  = regexp.MustCompile(`^--\s*\+goose\s+(.*?)\s*$`)
	dbmateRE = regexp.MustCompile(`^--\s*migrate:(up|down)\b(.*)$`)
)

// parseUp returns the up part of a migration file of format f.
func parseUp(f Format, name string, data []byte) (upPart, error) {
	switch f {
	case Goose:
		return parseGoose(name, data)
	case Dbmate:
		return parseDbmate(name, data)
	}
	return upPart{body: data, cmds: commands(sqllex.Script(string(data)))}, nil
}

// command is one statement (or psql backslash command) of a migration file.
type command struct {
	sqllex.Command
	block bool // a goose StatementBegin … End block, sent as written (it may hold several statements)
}

func commands(script []sqllex.Command) []command {
	out := make([]command, len(script))
	for i, c := range script {
		out[i] = command{Command: c}
	}
	return out
}

// line is one line of a file: data[start:end] without its line break.
type line struct {
	n          int // 1-based
	start, end int
	next       int // where the next line starts
}

func lines(data []byte) []line {
	var out []line
	for i, n := 0, 1; i < len(data); n++ {
		e := bytes.IndexByte(data[i:], '\n')
		next := len(data)
		if e < 0 {
			e = len(data)
		} else {
			e += i
			next = e + 1
		}
		end := e
		if end > i && data[end-1] == '\r' {
			end--
		}
		out = append(out, line{n: n, start: i, end: end, next: next})
		i = next
	}
	return out
}

// sectioner collects the up section of a file: ranges of plain SQL (split by
// sqllex) and ranges that are one statement each (goose's StatementBegin … End).
type sectioner struct {
	data       []byte
	plain      [][2]int
	whole      [][2]int
	bodyStart  int
	bodyEnd    int
	inUp, done bool
}

// script returns the up part: the plain ranges are split in a copy of the file
// blanked outside them (so lines and offsets stay those of the file), and each whole
// range is one statement.
func (s *sectioner) script(noTx bool) upPart {
	masked := bytes.Repeat([]byte{' '}, len(s.data))
	for i, c := range s.data {
		if c == '\n' {
			masked[i] = c
		}
	}
	for _, r := range s.plain {
		copy(masked[r[0]:r[1]], s.data[r[0]:r[1]])
	}
	cmds := commands(sqllex.Script(string(masked)))
	lc := lineIndex(s.data)
	for _, r := range s.whole {
		text := strings.TrimSpace(string(s.data[r[0]:r[1]]))
		if text == "" {
			continue
		}
		start := r[0] + strings.Index(string(s.data[r[0]:r[1]]), text)
		cmds = append(cmds, command{Command: sqllex.Command{Kind: sqllex.SQLCommand, Text: text, Start: start, Line: lc(start)}, block: true})
	}
	slices.SortFunc(cmds, func(a, b command) int { return a.Start - b.Start })
	if s.bodyEnd < s.bodyStart {
		s.bodyEnd = s.bodyStart
	}
	return upPart{body: s.data[s.bodyStart:s.bodyEnd], cmds: cmds, noTx: noTx}
}

// lineIndex returns a function giving the 1-based line of an offset in data.
func lineIndex(data []byte) func(int) int {
	return func(off int) int { return bytes.Count(data[:off], []byte{'\n'}) + 1 }
}

// parseGoose reads goose's annotations: -- +goose Up / Down, StatementBegin /
// StatementEnd and NO TRANSACTION.
func parseGoose(name string, data []byte) (upPart, error) {
	s := &sectioner{data: data, bodyEnd: -1}
	noTx, block, segStart := false, -1, 0
	for _, l := range lines(data) {
		m := gooseRE.FindSubmatch(bytes.TrimSpace(data[l.start:l.end]))
		if m == nil {
			continue
		}
		switch ann := strings.ToUpper(string(m[1])); {
		case ann == "UP":
			if !s.inUp && !s.done {
				s.inUp, s.bodyStart, segStart = true, l.next, l.next
			}
		case ann == "DOWN":
			if s.inUp {
				s.plain = append(s.plain, [2]int{segStart, l.start})
				s.inUp, s.done, s.bodyEnd = false, true, l.start
			}
		case ann == "STATEMENTBEGIN":
			if s.inUp {
				s.plain = append(s.plain, [2]int{segStart, l.start})
				block = l.next
			}
		case ann == "STATEMENTEND":
			if s.inUp && block >= 0 {
				s.whole = append(s.whole, [2]int{block, l.start})
				block, segStart = -1, l.next
			}
		case ann == "NO TRANSACTION":
			noTx = true
		default:
			return upPart{}, fmt.Errorf("%s line %d: goose annotation %q is not supported", name, l.n, m[1])
		}
	}
	if block >= 0 {
		return upPart{}, fmt.Errorf("%s: goose StatementBegin without StatementEnd", name)
	}
	if !s.inUp && !s.done {
		return upPart{}, fmt.Errorf("%s: no -- +goose Up annotation", name)
	}
	if s.inUp {
		s.plain = append(s.plain, [2]int{segStart, len(data)})
		s.bodyEnd = len(data)
	}
	return s.script(noTx), nil
}

// parseDbmate reads dbmate's -- migrate:up [transaction:false] / -- migrate:down.
func parseDbmate(name string, data []byte) (upPart, error) {
	s := &sectioner{data: data, bodyEnd: -1}
	noTx := false
	for _, l := range lines(data) {
		m := dbmateRE.FindSubmatch(bytes.TrimSpace(data[l.start:l.end]))
		if m == nil {
			continue
		}
		switch string(m[1]) {
		case "up":
			if s.inUp || s.done {
				return upPart{}, fmt.Errorf("%s line %d: a second -- migrate:up", name, l.n)
			}
			s.inUp, s.bodyStart = true, l.next
			for opt := range strings.FieldsSeq(string(m[2])) {
				switch opt {
				case "transaction:false":
					noTx = true
				case "transaction:true":
				default:
					return upPart{}, fmt.Errorf("%s line %d: dbmate option %q is not supported", name, l.n, opt)
				}
			}
		case "down":
			if s.inUp {
				s.plain = append(s.plain, [2]int{s.bodyStart, l.start})
				s.inUp, s.done, s.bodyEnd = false, true, l.start
			}
		}
	}
	if !s.inUp && !s.done {
		return upPart{}, fmt.Errorf("%s: no -- migrate:up line", name)
	}
	if s.inUp {
		s.plain = append(s.plain, [2]int{s.bodyStart, len(data)})
		s.bodyEnd = len(data)
	}
	return s.script(noTx), nil
}
