package main

import (
	"fmt"
	"io"
	"strings"
)

// goal is one of the project's performance goals, judged from this run's rows.
type goal struct {
	Goal     string  `json:"goal"`
	Measured float64 `json:"measured"`
	Target   string  `json:"target"`
	Met      bool    `json:"met"`
	Found    bool    `json:"found"`
}

// find returns the row named name in the last group whose name starts with prefix.
func (rep *report) find(prefix, name string) (row, bool) {
	var out row
	found := false
	for _, r := range rep.Rows {
		if strings.HasPrefix(r.Group, prefix) && r.Name == name {
			out, found = r, true
		}
	}
	return out, found
}

// ratioOf is a/b of two rows' values, found when both are.
func (rep *report) ratioOf(prefixA, nameA, prefixB, nameB string) (float64, bool) {
	a, okA := rep.find(prefixA, nameA)
	b, okB := rep.find(prefixB, nameB)
	if !okA || !okB || b.Value == 0 {
		return 0, false
	}
	return a.Value / b.Value, true
}

// judge computes every goal from the rows: a ratio ≤ or ≥ a target.
func (rep *report) judge() []goal {
	type spec struct {
		text           string
		prefixA, nameA string
		prefixB, nameB string
		atMost         bool
		target         float64
	}
	suite := func(set string) string { return "2 suite " + set + ", " }
	specs := []spec{
		{"tx-mode acquisition / direct (flat out, p50)", "1 acquisition, flat out", nameProxyTx, "1 acquisition, flat out", nameDirect, true, 0.15},
		{"db-mode acquisition / direct (paced, p50)", "1 acquisition, paced", nameProxyDB, "1 acquisition, paced", nameDirect, true, 1.1},
		{"suite large: pgtestdb / tx mode (speed-up)", suite(setLarge), namePgtestdb, suite(setLarge), nameProxyTx, false, 30},
		{"suite small: pgtestdb / tx mode (speed-up)", suite(setSmall), namePgtestdb, suite(setSmall), nameProxyTx, false, 10},
		{"suite large: pgtestdb / db mode (speed-up)", suite(setLarge), namePgtestdb, suite(setLarge), nameProxyDB, false, 8},
		{"suite small: pgtestdb / db mode (speed-up)", suite(setSmall), namePgtestdb, suite(setSmall), nameProxyDB, false, 3},
		{"suite large: tx mode / go-txdb warm (time)", suite(setLarge), nameProxyTx, suite(setLarge), nameTxdbWarm, true, 1.5},
		{"suite small: tx mode / go-txdb warm (time)", suite(setSmall), nameProxyTx, suite(setSmall), nameTxdbWarm, true, 1.5},
		{"pgbench -S: db mode / pgbouncer session", "3 pgbench -S -c 4", nameProxyDB, "3 pgbench -S -c 4", namePgbouncer, false, 1.0},
		{"pgbench -S: tx mode / pgbouncer session", "3 pgbench -S -c 4", nameProxyTx, "3 pgbench -S -c 4", namePgbouncer, false, 0.9},
		{"pgbench -S -C: tx mode / pgbouncer session", "3 pgbench -S -C", nameProxyTx, "3 pgbench -S -C", namePgbouncer, false, 1.0},
		{"8 connections on one tx key / the same 8 direct", "3 pgbench -S -c 8", nameProxyTx + ", one session key",
			"3 pgbench -S -c 8", nameDirect + " (8 connections, one database)", false, 0.6},
	}
	var out []goal
	for _, s := range specs {
		v, ok := rep.ratioOf(s.prefixA, s.nameA, s.prefixB, s.nameB)
		g := goal{Goal: s.text, Measured: v, Found: ok}
		if s.atMost {
			g.Target, g.Met = fmt.Sprintf("≤ %g", s.target), ok && v <= s.target
		} else {
			g.Target, g.Met = fmt.Sprintf("≥ %g", s.target), ok && v >= s.target
		}
		out = append(out, g)
	}
	for _, mode := range []string{"db", "tx"} {
		var last row
		found := false
		for _, r := range rep.Rows {
			if r.Group == "5 footprint, "+mode+" mode, idle sessions" {
				last, found = r, true
			}
		}
		at500 := found && strings.HasPrefix(last.Name, "500 sessions") // --quick stops at 100
		out = append(out, goal{Goal: fmt.Sprintf("proxy RSS in %s mode at 500 idle sessions, MB", mode),
			Measured: last.Value, Found: at500, Target: "≤ 64 at 500 sessions", Met: at500 && last.Value <= 64})
	}
	return out
}

// printGoals writes the goals as a table; a goal whose rows this run did not measure
// says so.
func printGoals(w io.Writer, goals []goal) {
	fmt.Fprintln(w, "\ngoals, from this run's rows:")
	for _, g := range goals {
		verdict := "not measured in this run"
		if g.Found {
			verdict = fmt.Sprintf("%.3g (target %s): ", g.Measured, g.Target)
			if g.Met {
				verdict += "met"
			} else {
				verdict += "NOT met"
			}
		}
		fmt.Fprintf(w, "  %-52s %s\n", g.Goal, verdict)
	}
}

// markdownGoals writes the goals as a Markdown table.
func markdownGoals(w io.Writer, goals []goal) {
	fmt.Fprintln(w, "\n| goal | measured | target | met |")
	fmt.Fprintln(w, "|---|---|---|---|")
	for _, g := range goals {
		measured, met := "not measured", ""
		if g.Found {
			measured, met = fmt.Sprintf("%.3g", g.Measured), "no"
			if g.Met {
				met = "yes"
			}
		}
		fmt.Fprintf(w, "| %s | %s | %s | %s |\n", g.Goal, measured, g.Target, met)
	}
}
