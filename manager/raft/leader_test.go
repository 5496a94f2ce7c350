package raft

import "testing"

func drain(ch <-chan bool) []bool {
	var out []bool
	for {
		select {
		case v, ok := <-ch:
			if !ok {
				return out
			}
			out = append(out, v)
		default:
			return out
		}
	}
}

func TestLeaderFeed(t *testing.T) {
	f := newLeaderFeed()
	early, cancelEarly := f.subscribe()
	f.publish(true)
	f.publish(true) // no change, not sent
	late, _ := f.subscribe()

	if got := drain(early); len(got) != 1 || !got[0] {
		t.Fatalf("early subscriber: got %v, want [true]", got)
	}
	if got := drain(late); len(got) != 1 || !got[0] {
		t.Fatalf("subscriber while leading: got %v, want [true]", got)
	}

	// A reader that falls behind ends on the current state.
	for i := range 3 * leaderSubBuffer {
		f.publish(i%2 == 1)
	}
	got := drain(late)
	if len(got) == 0 || len(got) > leaderSubBuffer || got[len(got)-1] != f.leading {
		t.Fatalf("slow subscriber: got %v, want at most %d values ending in %v", got, leaderSubBuffer, f.leading)
	}

	cancelEarly()
	cancelEarly() // idempotent
	drain(early)  // what was buffered before the cancel
	if _, ok := <-early; ok {
		t.Fatal("got an open channel after cancel, want closed")
	}

	f.publish(true)
	drain(late)
	f.close()
	if v, ok := <-late; !ok || v {
		t.Fatalf("got %v (open %v) on close while leading, want false", v, ok)
	}
	if _, ok := <-late; ok {
		t.Fatal("got an open channel after close, want closed")
	}
	after, cancel := f.subscribe()
	cancel()
	if _, ok := <-after; ok {
		t.Fatal("got an open channel subscribing after close, want closed")
	}
}
