package main

import (
	"cmp"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"regexp"
	"slices"
	"strings"
	"time"
)

// runLabels are the table's words for each run.
var runLabels = map[string]string{
	"direct": "direct (plain PostgreSQL)",
	"db-key": "db mode, one session key for the suite",
	"tx":     "tx mode, no session key (each connection its own lease)",
	"tx-key": "tx mode, one session key for the suite",
}

// report compares every run with the direct one.
type report struct {
	Baseline int          `json:"baseline"` // tests that pass directly
	Runs     []*runReport `json:"runs"`
}

// runReport is one row of the table and its failures.
type runReport struct {
	Name     string         `json:"name"`
	Label    string         `json:"label"`
	Passed   int            `json:"passed_of_baseline"`
	Total    counts         `json:"total"`
	Duration time.Duration  `json:"duration_ns"`
	Groups   []*causeGroup  `json:"fail_only_here"`
	Kinds    map[string]int `json:"kinds,omitempty"` // failures by kind (kinds.go)
	Other    []string       `json:"other,omitempty"` // the failures of no kind, with their causes
}

// counts are a run's results over all its tests.
type counts struct {
	Pass, Fail, Skip, Unfinished int
}

// causeGroup is the tests that pass directly but not in a run, for one cause.
type causeGroup struct {
	Cause string   `json:"cause"`
	Tests []string `json:"tests"`
}

func buildReport(results []*runResult) *report {
	direct := results[0]
	var baseline []string
	for id, t := range direct.Tests {
		if t.Action == "pass" {
			baseline = append(baseline, id)
		}
	}
	slices.Sort(baseline)
	rep := &report{Baseline: len(baseline)}
	for _, res := range results {
		rr := &runReport{Name: res.Name, Label: runLabels[res.Name], Duration: res.Duration}
		for _, t := range res.Tests {
			switch t.Action {
			case "pass":
				rr.Total.Pass++
			case "fail":
				rr.Total.Fail++
			case "skip":
				rr.Total.Skip++
			default:
				rr.Total.Unfinished++
			}
		}
		groups := map[string]*causeGroup{}
		for _, id := range baseline {
			t := res.Tests[id]
			if t != nil && t.Action == "pass" {
				rr.Passed++
				continue
			}
			// A parent failing through its subtests and a subtest that never started
			// because of its parent join the group of the cause they name.
			c := causeOf(res, id)
			for _, p := range []string{subtestFailed, parentFailed} {
				c = strings.TrimPrefix(c, p)
			}
			if rr.Kinds == nil {
				rr.Kinds = map[string]int{}
			}
			kind := kindOf(res, id, c)
			rr.Kinds[kind]++
			if kind == otherKind {
				rr.Other = append(rr.Other, id+": "+c)
			}
			key := normalise(c)
			g := groups[key]
			if g == nil {
				g = &causeGroup{Cause: c}
				groups[key] = g
			}
			g.Tests = append(g.Tests, id)
		}
		for _, g := range groups {
			rr.Groups = append(rr.Groups, g)
		}
		slices.SortFunc(rr.Groups, func(a, b *causeGroup) int {
			return cmp.Or(cmp.Compare(len(b.Tests), len(a.Tests)), cmp.Compare(a.Cause, b.Cause))
		})
		rep.Runs = append(rep.Runs, rr)
	}
	return rep
}

func (rep *report) print(w io.Writer, header string, listMax int) {
	fmt.Fprintf(w, "\n%s\n", header)
	fmt.Fprintf(w, "\n| run | passed of %d that pass directly | pass | fail | skip | unfinished | time |\n", rep.Baseline)
	fmt.Fprintln(w, "|---|---|---|---|---|---|---|")
	for _, rr := range rep.Runs {
		fmt.Fprintf(w, "| %s | %d | %d | %d | %d | %d | %s |\n", rr.Label, rr.Passed,
			rr.Total.Pass, rr.Total.Fail, rr.Total.Skip, rr.Total.Unfinished, rr.Duration.Round(time.Second))
	}
	for _, rr := range rep.Runs[1:] {
		n := rep.Baseline - rr.Passed
		fmt.Fprintf(w, "\n## %s: %d tests pass directly but not through the proxy\n", rr.Label, n)
		printKinds(w, rr)
		for _, g := range rr.Groups {
			fmt.Fprintf(w, "\n[%d] %s\n", len(g.Tests), g.Cause)
			for i, id := range g.Tests {
				if listMax > 0 && i == listMax {
					fmt.Fprintf(w, "    … and %d more\n", len(g.Tests)-listMax)
					break
				}
				fmt.Fprintf(w, "    %s\n", id)
			}
		}
	}
}

func (rep *report) writeJSON(path string, results []*runResult) error {
	data, err := json.MarshalIndent(struct {
		Report  *report      `json:"report"`
		Results []*runResult `json:"results"`
	}{rep, results}, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// Prefixes of causes borrowed from a parent or a subtest.
const (
	subtestFailed = "a subtest failed: "
	parentFailed  = "its parent failed first: "
)

// causeOf is the one-line reason test id did not pass in res.
func causeOf(res *runResult, id string) string {
	t := res.Tests[id]
	switch {
	case t == nil:
		// A subtest never starts when its parent fails first.
		for parent := id; strings.Contains(parent, "/"); {
			parent = parent[:strings.LastIndex(parent, "/")]
			if p := res.Tests[parent]; p != nil && p.Action == "fail" {
				if msg := firstMessage(p.Output); msg != "" {
					return parentFailed + msg
				}
			}
		}
		return "did not run: " + packageEnd(res, id)
	case t.Action == "":
		return "did not finish: " + packageEnd(res, id)
	case t.Action == "skip":
		return "skipped: " + firstMessage(t.Output)
	}
	if msg := firstMessage(t.Output); msg != "" {
		return msg
	}
	// A parent whose subtests failed says nothing itself: name the first subtest's cause.
	var subs []string
	for sid, s := range res.Tests {
		if strings.HasPrefix(sid, id+"/") && s.Action == "fail" {
			subs = append(subs, sid)
		}
	}
	if len(subs) > 0 {
		slices.Sort(subs)
		return subtestFailed + causeOf(res, subs[0])
	}
	return "failed without a message"
}

// packageEnd says how the package of test id ended, for tests that never ended.
func packageEnd(res *runResult, id string) string {
	pkg := res.Tests[id]
	name := ""
	if pkg != nil {
		name = pkg.Package
	} else {
		for p := range res.PackageAction {
			if strings.HasPrefix(id, p+".") && len(p) > len(name) {
				name = p
			}
		}
	}
	for _, line := range res.PackageOutput[name] {
		if l := strings.TrimSpace(line); strings.HasPrefix(l, "panic:") || strings.Contains(l, "[build failed]") {
			return l
		}
	}
	if a := res.PackageAction[name]; a != "" {
		return "package " + name + " ended (" + a + ") before it"
	}
	return "package " + name + " did not run"
}

var (
	fileLine  = regexp.MustCompile(`^[\w./-]+\.go:\d+: ?(.*)$`)
	testifyEr = regexp.MustCompile(`^Error:\s*(.*)$`)
)

// firstMessage is the first line of a failure (or skip) message in a test's output:
// t.Error's text, or testify's "Error:" field with its first continuation line.
func firstMessage(output []string) string {
	var lines []string
	for _, o := range output {
		l := strings.TrimSpace(o)
		if l == "" || strings.HasPrefix(l, "=== ") || strings.HasPrefix(l, "--- ") {
			continue
		}
		lines = append(lines, l)
	}
	for i, l := range lines {
		if strings.HasPrefix(l, "panic:") {
			return clip(l)
		}
		if l == "got:" && i+1 < len(lines) { // an Example whose output differs
			return clip("example output differs, got: " + lines[i+1])
		}
		m := fileLine.FindStringSubmatch(l)
		if m == nil {
			continue
		}
		if m[1] != "" {
			return clip(m[1])
		}
		for j := i + 1; j < len(lines); j++ {
			e := testifyEr.FindStringSubmatch(lines[j])
			if e == nil {
				continue
			}
			msg := e[1]
			// "Not equal:" is followed by expected and actual; other fields by one line.
			for k := j + 1; strings.HasSuffix(msg, ":") || strings.HasPrefix(msg, "Not equal:") && k <= j+2; k++ {
				if k >= len(lines) || strings.HasPrefix(lines[k], "Test:") || strings.HasPrefix(lines[k], "Messages:") {
					break
				}
				msg += " " + lines[k]
			}
			return clip(msg)
		}
		if i+1 < len(lines) {
			return clip(lines[i+1])
		}
	}
	if len(lines) > 0 {
		return clip(lines[0])
	}
	return ""
}

// connectPrefix is the part of pgconn's connect error that names the target.
var connectPrefix = regexp.MustCompile("failed to connect to `[^`]*`: \\S+ \\([^)]*\\): ")

// clip shortens a message to one readable line.
func clip(s string) string {
	s = connectPrefix.ReplaceAllString(s, "connect: ")
	const max = 240
	if len(s) > max {
		return s[:max] + "…"
	}
	return s
}

var (
	hexRun   = regexp.MustCompile(`\b[0-9a-f]{8,}\b`)
	digitRun = regexp.MustCompile(`\d+`)
)

// normalise makes causes that differ only in numbers, names of clones and hashes
// one group.
func normalise(c string) string {
	return digitRun.ReplaceAllString(hexRun.ReplaceAllString(c, "H"), "N")
}

// readResults reads the results of an earlier --json file.
func readResults(path string) ([]*runResult, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var saved struct {
		Results []*runResult `json:"results"`
	}
	if err := json.Unmarshal(data, &saved); err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	if len(saved.Results) == 0 || saved.Results[0].Name != "direct" {
		return nil, fmt.Errorf("read %s: no direct run to compare with", path)
	}
	return saved.Results, nil
}
