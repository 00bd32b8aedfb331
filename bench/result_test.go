package main

import (
	"strings"
	"testing"
	"time"
)

func TestPercentile(t *testing.T) {
	var ds []time.Duration
	for i := 100; i >= 1; i-- { // unsorted on purpose
		ds = append(ds, time.Duration(i)*time.Millisecond)
	}
	for _, tc := range []struct {
		p    float64
		want time.Duration
	}{{50, 50 * time.Millisecond}, {95, 95 * time.Millisecond}, {99, 99 * time.Millisecond}, {100, 100 * time.Millisecond}} {
		if got := percentile(ds, tc.p); got != tc.want {
			t.Errorf("p%v = %v, want %v", tc.p, got, tc.want)
		}
	}
	if got := percentile(nil, 50); got != 0 {
		t.Errorf("p50 of nothing = %v, want 0", got)
	}
}

func TestMedian(t *testing.T) {
	if got := median([]float64{3, 1, 2}); got != 2 {
		t.Errorf("median odd = %v", got)
	}
	if got := median([]float64{4, 1, 2, 3}); got != 2.5 {
		t.Errorf("median even = %v", got)
	}
}

func TestRatiosPerGroup(t *testing.T) {
	rep := &report{progress: &strings.Builder{}}
	rep.add(row{Group: "a", Name: "x", Value: 4})
	rep.add(row{Group: "a", Name: "base", Value: 2, Baseline: true})
	rep.add(row{Group: "b", Name: "base", Value: 10, Baseline: true})
	rep.add(row{Group: "b", Name: "y", Value: 5})
	rep.add(row{Group: "c", Name: "no baseline", Value: 5})
	rep.ratios()
	want := []float64{2, 1, 1, 0.5, 0}
	for i, r := range rep.Rows {
		if r.Ratio != want[i] {
			t.Errorf("%s/%s ratio = %v, want %v", r.Group, r.Name, r.Ratio, want[i])
		}
	}
	var out strings.Builder
	rep.print(&out)
	lines := strings.Split(out.String(), "\n")
	if !strings.Contains(lines[1], "base") || !strings.Contains(lines[1], "baseline") {
		t.Errorf("the baseline is not printed first in its group:\n%s", out.String())
	}
}

func TestDryNote(t *testing.T) {
	ms := func(v ...int) []time.Duration {
		var ds []time.Duration
		for _, x := range v {
			ds = append(ds, time.Duration(x)*time.Millisecond)
		}
		return ds
	}
	got := dryNote(ms(2, 2, 2, 2, 2, 50, 50, 50, 50, 50), 4)
	if !strings.Contains(got, "dry from lease 6") || !strings.Contains(got, "20 leases/s") {
		t.Errorf("dryNote = %q, want dry from lease 6 and 20 leases/s", got)
	}
	if got := dryNote(ms(2, 2, 2, 2, 2, 3), 4); !strings.Contains(got, "never ran dry") {
		t.Errorf("dryNote = %q, want never ran dry", got)
	}
}

func TestJudgeGoals(t *testing.T) {
	rep := &report{progress: &strings.Builder{}}
	rep.add(row{Group: "1 acquisition, flat out", Name: nameDirect, Value: 10, Baseline: true})
	rep.add(row{Group: "1 acquisition, flat out", Name: nameProxyTx, Value: 1})
	rep.add(row{Group: "2 suite large, 10 tests, 1 workers", Name: namePgtestdb, Value: 100, Baseline: true})
	rep.add(row{Group: "2 suite large, 10 tests, 1 workers", Name: nameProxyTx, Value: 1})
	rep.add(row{Group: "2 suite large, 10 tests, 4 workers", Name: namePgtestdb, Value: 20, Baseline: true})
	rep.add(row{Group: "2 suite large, 10 tests, 4 workers", Name: nameProxyTx, Value: 1})
	goals := map[string]goal{}
	for _, g := range rep.judge() {
		goals[g.Goal] = g
	}
	if g := goals["tx-mode acquisition / direct (flat out, p50)"]; !g.Found || !g.Met || g.Measured != 0.1 {
		t.Errorf("tx acquisition goal = %+v, want 0.1 met", g)
	}
	// The last (most workers) group counts: 20× is short of 30×.
	if g := goals["suite large: pgtestdb / tx mode (speed-up)"]; !g.Found || g.Met || g.Measured != 20 {
		t.Errorf("suite goal = %+v, want 20 not met", g)
	}
	if g := goals["pgbench -S: tx mode / pgbouncer session"]; g.Found || g.Met {
		t.Errorf("pgbench goal = %+v, want not measured", g)
	}
}
