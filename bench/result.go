package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"slices"
	"sort"
	"strings"
	"text/tabwriter"
	"time"
)

// row is one line of the result table. Value is the row's headline figure (a median, a
// p50, a total); Ratio is Value over the Value of its group's baseline row.
type row struct {
	Group    string  `json:"group"`
	Name     string  `json:"name"`
	Unit     string  `json:"unit"`
	Value    float64 `json:"value"`
	P95      float64 `json:"p95,omitempty"`
	P99      float64 `json:"p99,omitempty"`
	Baseline bool    `json:"baseline,omitempty"`
	Ratio    float64 `json:"ratio,omitempty"`
	Note     string  `json:"note,omitempty"`
}

// report collects the rows of one run in the order they were measured.
type report struct {
	Started  time.Time `json:"started"`
	Quick    bool      `json:"quick"`
	Command  string    `json:"command"`
	Machine  string    `json:"machine"`
	Rows     []row     `json:"rows"`
	Skipped  []string  `json:"skipped,omitempty"`
	Goals    []goal    `json:"goals,omitempty"`
	groups   []string
	progress io.Writer
}

// add records r, printing it as it comes so a long run shows its progress.
func (rep *report) add(r row) {
	if !slices.Contains(rep.groups, r.Group) {
		rep.groups = append(rep.groups, r.Group)
	}
	rep.Rows = append(rep.Rows, r)
	fmt.Fprintf(rep.progress, "  %-44s %-46s %s\n", r.Group, r.Name, formatValue(r))
}

// skip records a row group or row left out, and why.
func (rep *report) skip(why string) {
	rep.Skipped = append(rep.Skipped, why)
	fmt.Fprintln(rep.progress, "  skipped:", why)
}

// ratios fills Ratio for every row whose group has a baseline.
func (rep *report) ratios() {
	base := map[string]float64{}
	for _, r := range rep.Rows {
		if r.Baseline {
			base[r.Group] = r.Value
		}
	}
	for i, r := range rep.Rows {
		if b, ok := base[r.Group]; ok && b > 0 {
			rep.Rows[i].Ratio = r.Value / b
		}
	}
}

func formatValue(r row) string {
	s := fmt.Sprintf("%.4g %s", r.Value, r.Unit)
	if r.P95 > 0 {
		s = fmt.Sprintf("p50 %.3g / p95 %.3g / p99 %.3g %s", r.Value, r.P95, r.P99, r.Unit)
	}
	return s
}

// byGroup returns the rows group by group, in the order the groups were measured, each
// group's baseline first.
func (rep *report) byGroup() [][]row {
	var out [][]row
	for _, g := range rep.groups {
		var rows []row
		for _, r := range rep.Rows {
			if r.Group == g {
				rows = append(rows, r)
			}
		}
		sort.SliceStable(rows, func(i, j int) bool { return rows[i].Baseline && !rows[j].Baseline })
		out = append(out, rows)
	}
	return out
}

// print writes the table: one block per group, the baseline first, every row with its
// ratio to the baseline.
func (rep *report) print(w io.Writer) {
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "group\trow\tresult\tratio\tnote")
	for _, rows := range rep.byGroup() {
		for _, r := range rows {
			ratio := ""
			switch {
			case r.Baseline:
				ratio = "1.00 (baseline)"
			case r.Ratio > 0:
				ratio = fmt.Sprintf("%.3g×", r.Ratio)
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", r.Group, r.Name, formatValue(r), ratio, r.Note)
		}
	}
	_ = tw.Flush()
	for _, s := range rep.Skipped {
		fmt.Fprintln(w, "skipped:", s)
	}
}

// markdown writes the table as Markdown, for BENCH.md.
func (rep *report) markdown(w io.Writer) {
	fmt.Fprintln(w, "| group | row | result | ratio | note |")
	fmt.Fprintln(w, "|---|---|---|---|---|")
	for _, rows := range rep.byGroup() {
		for _, r := range rows {
			ratio := "baseline"
			if !r.Baseline {
				ratio = fmt.Sprintf("%.3g×", r.Ratio)
			}
			fmt.Fprintf(w, "| %s | %s | %s | %s | %s |\n", r.Group, r.Name, formatValue(r), ratio,
				strings.ReplaceAll(r.Note, "|", "/"))
		}
	}
}

func (rep *report) writeJSON(path string) error {
	b, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}

// percentile returns the p-th percentile (0 < p ≤ 100) of ds, nearest rank.
func percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	i := int(float64(len(s))*p/100+0.5) - 1
	return s[max(0, min(i, len(s)-1))]
}

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
