package txmode

import (
	"testing"
	"time"
)

// The guard's row is the setting as the server shows it, in its largest exact unit.
func TestParseMillis(t *testing.T) {
	for in, want := range map[string]time.Duration{"0": 0, "200ms": 200 * time.Millisecond, "5s": 5 * time.Second,
		"1min": time.Minute, "2h": 2 * time.Hour, "1d": 24 * time.Hour, "1500": 1500 * time.Millisecond} {
		if got, ok := parseMillis(in); !ok || got != want {
			t.Errorf("parseMillis(%q) = %v, %v; want %v", in, got, ok, want)
		}
	}
	for _, in := range []string{"", "ms", "5 s", "1w"} {
		if _, ok := parseMillis(in); ok {
			t.Errorf("parseMillis(%q) accepted", in)
		}
	}
}

// A query string runs guarded when it is empty, or holds PREPARE or DECLARE and
// nothing that may set the timeout.
func TestGuardedText(t *testing.T) {
	for sql, want := range map[string]bool{"": true, " ;; -- c": true, "SELECT 1": false,
		"PREPARE p AS SELECT 1": true, "declare c cursor for select 1; fetch c": true,
		"PREPARE p AS SELECT 1; SET idle_in_transaction_session_timeout = '1s'": false,
		"SET idle_in_transaction_session_timeout = '1s'":                        false} {
		if got := guardedText(sql); got != want {
			t.Errorf("guardedText(%q) = %v, want %v", sql, got, want)
		}
	}
}
