package store

import (
	"context"
	"slices"
	"time"
)

// WatchBuffer is the number of events a subscriber may fall behind before
// events are dropped for it.
const WatchBuffer = 1024

// Op says what happened to an object.
type Op string

const (
	OpCreate Op = "create"
	OpUpdate Op = "update"
	OpDelete Op = "delete"
)

// Change is one object written by a change set. Version is the object's new
// Meta.Version (the change set's index); read the object itself with View.
type Change struct {
	Kind    Kind
	Op      Op
	ID      string
	Version uint64
}

// Event is sent to watchers for every applied change set, in apply order.
type Event struct {
	// Index is the log index of the change set.
	Index uint64
	// Changes lists the objects written, in change set order.
	Changes []Change
	// Reset is set when Restore replaced the whole state: re-read everything.
	Reset bool
	// Dropped counts the events this subscriber missed just before this one
	// because its buffer was full; a subscriber that sees it non-zero should
	// re-read the state it cares about.
	Dropped uint64
}

type subscriber struct {
	ch      chan Event
	dropped uint64 // guarded by Store.watchMu
}

// Watch subscribes to events. Apply never blocks on a subscriber: each has
// a buffer of WatchBuffer events, and when it is full further events are
// dropped for that subscriber and counted (DroppedEvents, and Event.Dropped
// on the next event it receives). The cancel func unsubscribes and closes
// the channel.
func (s *Store) Watch() (<-chan Event, func()) {
	s.watchMu.Lock()
	defer s.watchMu.Unlock()
	return s.subscribeLocked()
}

// ViewAndWatch runs fn on a snapshot and subscribes in the same instant:
// the first event received is the first change set after that snapshot.
func (s *Store) ViewAndWatch(fn func(tx ReadTx)) (<-chan Event, func()) {
	s.mu.Lock()
	tx := s.readTx()
	s.watchMu.Lock()
	ch, cancel := s.subscribeLocked()
	s.watchMu.Unlock()
	s.mu.Unlock()
	fn(tx)
	return ch, cancel
}

// ViewAndWatchIndex is ViewAndWatch that also hands fn the index of the
// last change set in its snapshot, for a watcher that stamps what it
// derives with store indexes.
func (s *Store) ViewAndWatchIndex(fn func(tx ReadTx, index uint64)) (<-chan Event, func()) {
	s.mu.Lock()
	tx, index := s.readTx(), s.index
	s.watchMu.Lock()
	ch, cancel := s.subscribeLocked()
	s.watchMu.Unlock()
	s.mu.Unlock()
	fn(tx, index)
	return ch, cancel
}

func (s *Store) subscribeLocked() (<-chan Event, func()) {
	sub := &subscriber{ch: make(chan Event, s.watchBuffer)}
	s.subs[sub] = struct{}{}
	cancelled := false
	return sub.ch, func() {
		s.watchMu.Lock()
		defer s.watchMu.Unlock()
		if !cancelled {
			cancelled = true
			delete(s.subs, sub)
			close(sub.ch)
		}
	}
}

// DroppedEvents is the number of events dropped for slow subscribers since
// the store was created.
func (s *Store) DroppedEvents() uint64 { return s.dropped.Load() }

// publish sends ev to every subscriber without blocking.
func (s *Store) publish(ev Event) {
	s.watchMu.Lock()
	defer s.watchMu.Unlock()
	for sub := range s.subs {
		e := ev
		e.Changes = slices.Clone(ev.Changes)
		e.Dropped = sub.dropped
		select {
		case sub.ch <- e:
			sub.dropped = 0
		default:
			if sub.dropped == 0 {
				s.log.Warn("watcher too slow, dropping events", "index", ev.Index)
			}
			sub.dropped++
			s.dropped.Add(1)
		}
	}
}

// WaitFor blocks until an event that touches one of kinds arrives (or one
// that resets or drops events), or wake fires. After an event it lets the
// burst settle for settle, so a controller reacts once to many writes. It
// reports false when ctx ends or the watch closes.
func WaitFor(ctx context.Context, events <-chan Event, wake <-chan time.Time, settle time.Duration, kinds ...Kind) bool {
	for {
		select {
		case <-ctx.Done():
			return false
		case <-wake:
			return true
		case ev, ok := <-events:
			if !ok {
				return false
			}
			if !touches(ev, kinds) {
				continue
			}
		}
		break
	}
	timer := time.NewTimer(settle)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return false
		case _, ok := <-events:
			if !ok {
				return false
			}
		case <-timer.C:
			return true
		}
	}
}

// Paced is the settle time WaitFor should take after a controller pass
// that took pass: settle, or twice the pass if longer. A controller whose
// pass reads a big store (every task, at 10,000 tasks tens of ms) then
// spends at most a third of a core on it however often the store changes,
// where passing again 10-30 ms after every change kept three of them busy
// on two cores while a 10,000-task service started.
func Paced(settle, pass time.Duration) time.Duration {
	return max(settle, 2*pass)
}

func touches(ev Event, kinds []Kind) bool {
	if ev.Reset || ev.Dropped > 0 {
		return true
	}
	for _, c := range ev.Changes {
		if slices.Contains(kinds, c.Kind) {
			return true
		}
	}
	return false
}
