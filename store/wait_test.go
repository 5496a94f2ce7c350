package store

import (
	"context"
	"testing"
	"time"
)

func TestWaitFor(t *testing.T) {
	fired := make(chan time.Time, 1)
	fired <- time.Time{}
	closed := make(chan Event)
	close(closed)
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	events := func(evs ...Event) <-chan Event {
		ch := make(chan Event, len(evs))
		for _, ev := range evs {
			ch <- ev
		}
		return ch
	}
	node := Event{Changes: []Change{{Kind: KindNode}}}
	task := Event{Changes: []Change{{Kind: KindTask}}}
	for _, tc := range []struct {
		name   string
		ctx    context.Context
		events <-chan Event
		wake   <-chan time.Time
		want   bool
	}{
		{"a relevant event", context.Background(), events(task), nil, true},
		{"irrelevant events, then a relevant one", context.Background(), events(node, node, task), nil, true},
		{"a reset", context.Background(), events(Event{Reset: true}), nil, true},
		{"dropped events", context.Background(), events(Event{Dropped: 3}), nil, true},
		{"the wake-up", context.Background(), events(), fired, true},
		{"a closed watch", context.Background(), closed, nil, false},
		{"a cancelled context", cancelled, events(), nil, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := WaitFor(tc.ctx, tc.events, tc.wake, time.Millisecond, KindTask); got != tc.want {
				t.Errorf("got %v, want %v", got, tc.want)
			}
		})
	}
}

func TestPaced(t *testing.T) {
	tests := []struct {
		settle, pass, want time.Duration
	}{
		{20 * time.Millisecond, 0, 20 * time.Millisecond},
		{20 * time.Millisecond, 5 * time.Millisecond, 20 * time.Millisecond},
		{20 * time.Millisecond, 10 * time.Millisecond, 20 * time.Millisecond},
		{20 * time.Millisecond, 40 * time.Millisecond, 80 * time.Millisecond},
		{10 * time.Millisecond, time.Second, 2 * time.Second},
	}
	for _, tt := range tests {
		if got := Paced(tt.settle, tt.pass); got != tt.want {
			t.Errorf("Paced(%v, %v) = %v, want %v", tt.settle, tt.pass, got, tt.want)
		}
	}
}
