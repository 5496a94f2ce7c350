package agent

import (
	"testing"
	"time"
)

func TestNextBeat(t *testing.T) {
	t0 := time.Unix(1000, 0)
	tests := []struct {
		name string
		now  time.Time
		r    float64
		want time.Time
	}{
		{"on schedule, no jitter drawn low", t0.Add(100 * time.Millisecond), 0, t0.Add(900 * time.Millisecond)},
		{"on schedule, middle", t0.Add(100 * time.Millisecond), 0.5, t0.Add(time.Second)},
		{"on schedule, jitter drawn high", t0.Add(100 * time.Millisecond), 0.999999999, t0.Add(1100 * time.Millisecond)},
		// A slow beat does not push the schedule back by its own length.
		{"beat ended after 700ms", t0.Add(700 * time.Millisecond), 0.5, t0.Add(time.Second)},
		{"beat overran its slot: beat now", t0.Add(2500 * time.Millisecond), 0.5, t0.Add(2500 * time.Millisecond)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := nextBeat(t0, tt.now, time.Second, tt.r)
			if d := got.Sub(tt.want); d > time.Microsecond || d < -time.Microsecond {
				t.Errorf("got %v after t0, want %v", got.Sub(t0), tt.want.Sub(t0))
			}
		})
	}
}
