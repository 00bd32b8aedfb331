package histo

import (
	"testing"
	"time"
)

func TestQuantile(t *testing.T) {
	var h Histogram
	if q := h.Snapshot().Quantile(0.5); q != 0 {
		t.Fatalf("empty p50 = %v, want 0", q)
	}
	for range 99 {
		h.Observe(2 * time.Millisecond) // bucket (1ms, 2.5ms]
	}
	h.Observe(20 * time.Second) // bucket (10s, 30s]
	s := h.Snapshot()
	if s.Count != 100 || s.Sum != 99*2*time.Millisecond+20*time.Second {
		t.Fatalf("count %d sum %v", s.Count, s.Sum)
	}
	if p50 := s.Quantile(0.5); p50 <= time.Millisecond || p50 > 2500*time.Microsecond {
		t.Errorf("p50 = %v, want within (1ms, 2.5ms]", p50)
	}
	if p100 := s.Quantile(1); p100 <= 10*time.Second || p100 > 30*time.Second {
		t.Errorf("p100 = %v, want within (10s, 30s]", p100)
	}
	h.Observe(time.Hour)
	if top := h.Snapshot().Quantile(1); top != 300*time.Second {
		t.Errorf("quantile above the largest bound = %v, want 5m", top)
	}
}
