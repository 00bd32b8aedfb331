package proxy

import "testing"

// TestStatsOffScan: the setting's name is found in any case and split across chunks
// anywhere; its absence is not mistaken for it.
func TestStatsOffScan(t *testing.T) {
	stream := []byte("Q\x00\x00\x00\x20SET Track_Counts = off; INSERT INTO t VALUES (1)")
	for cut1 := 0; cut1 <= len(stream); cut1++ {
		for cut2 := cut1; cut2 <= len(stream); cut2++ {
			var s statsOffScan
			s.feed(stream[:cut1])
			s.feed(stream[cut1:cut2])
			s.feed(stream[cut2:])
			if !s.seen {
				t.Fatalf("missed with cuts at %d and %d", cut1, cut2)
			}
		}
	}
	// One byte at a time.
	var s statsOffScan
	for i := range stream {
		s.feed(stream[i : i+1])
	}
	if !s.seen {
		t.Fatal("missed when fed a byte at a time")
	}
	for _, clean := range []string{"SELECT track_count", "track counts", "_counts", "track_", "SELECT 1; -- track_countz", "trackcounts"} {
		var s statsOffScan
		for i := range len(clean) {
			s.feed([]byte(clean[i : i+1]))
		}
		s2 := statsOffScan{}
		s2.feed([]byte(clean))
		if s.seen || s2.seen {
			t.Errorf("%q taken for the setting's name", clean)
		}
	}
	if !startupNamesStatsOff(map[string]string{"options": "-c TRACK_COUNTS=off"}) || startupNamesStatsOff(map[string]string{"application_name": "x"}) {
		t.Error("startup parameters misjudged")
	}
}

// TestDBSessionNamingTrackCountsNotClean: a db-mode session that names track_counts
// (which could hide its changes from the statistics the provider judges a clone by),
// in a statement or in its startup options, ends its lease not clean; a session that
// does not ends it clean.
func TestDBSessionNamingTrackCountsNotClean(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name  string
		query []string // URL query parameters
		sql   string
		clean bool
	}{
		{"plain", nil, "SELECT 1", true},
		{"SET", nil, "SET track_counts = off", false},
		{"set_config", nil, "SELECT set_config('TRACK_COUNTS', 'off', false)", false},
		{"startup options", []string{"options=-c%20track_counts%3Doff"}, "SELECT 1", false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			p := newTestProvider(t)
			s := startProxy(t, Config{Provider: p})
			c := connect(t, proxyURL(s, "app", tc.query...))
			if _, err := c.Exec(testContext(t), tc.sql); err != nil {
				t.Fatal(err)
			}
			if err := c.Close(testContext(t)); err != nil {
				t.Fatal(err)
			}
			waitFor(t, "lease released", func() bool { return len(p.releases()) == 1 })
			if got := p.releases()[0].clean; got != tc.clean {
				t.Fatalf("%s: released clean = %v, want %v", tc.sql, got, tc.clean)
			}
		})
	}
}
