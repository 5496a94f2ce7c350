package raft

import "sync"

// leaderSubBuffer is the buffer of one LeaderChanges subscription.
const leaderSubBuffer = 16

// leaderFeed fans this node's leadership changes out to subscribers.
type leaderFeed struct {
	mu      sync.Mutex
	leading bool
	closed  bool
	next    int
	subs    map[int]chan bool
}

func newLeaderFeed() *leaderFeed { return &leaderFeed{subs: make(map[int]chan bool)} }

// publish records the new state and sends it to every subscriber. A subscriber whose
// buffer is full has its pending values replaced by the latest one: a slow reader may miss
// intermediate flips but always ends on the current state.
func (f *leaderFeed) publish(leading bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed || leading == f.leading {
		return
	}
	f.leading = leading
	for _, ch := range f.subs {
		sendLatest(ch, leading)
	}
}

func sendLatest(ch chan bool, v bool) {
	select {
	case ch <- v:
		return
	default:
	}
	for drained := false; !drained; {
		select {
		case <-ch:
		default:
			drained = true
		}
	}
	// Only publish sends, under f.mu, so there is room now.
	select {
	case ch <- v:
	default:
	}
}

// subscribe returns a channel that first gets true if this node leads right now, then
// every change; and a function that ends the subscription and closes the channel.
func (f *leaderFeed) subscribe() (<-chan bool, func()) {
	f.mu.Lock()
	defer f.mu.Unlock()
	ch := make(chan bool, leaderSubBuffer)
	if f.closed {
		close(ch)
		return ch, func() {}
	}
	if f.leading {
		ch <- true
	}
	id := f.next
	f.next++
	f.subs[id] = ch
	return ch, func() {
		f.mu.Lock()
		defer f.mu.Unlock()
		if c, ok := f.subs[id]; ok {
			delete(f.subs, id)
			close(c)
		}
	}
}

// close sends false if this node was leading, then closes every subscription.
func (f *leaderFeed) close() {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return
	}
	if f.leading {
		f.leading = false
		for _, ch := range f.subs {
			sendLatest(ch, false)
		}
	}
	f.closed = true
	for id, ch := range f.subs {
		close(ch)
		delete(f.subs, id)
	}
}
