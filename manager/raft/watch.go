package raft

import (
	"sync"
	"time"
)

// Leadership is the leader this node knows of at one moment.
type Leadership struct {
	ID, Addr string // both "" while no leader is known
	// Gen grows with every change of leader this node sees; a term seen
	// from one node.
	Gen uint64
	// Changed is closed at the next change of leader.
	Changed <-chan struct{}
}

// leaderWatch publishes the leader as this node knows it. It is fed by
// raft's leader observations and checked against raft's own answer on each
// read, so a dropped observation is healed by the next reader.
type leaderWatch struct {
	mu      sync.Mutex
	id      string
	addr    string
	gen     uint64
	changed chan struct{}
	current func() (id, addr string)
}

func newLeaderWatch(current func() (id, addr string)) *leaderWatch {
	return &leaderWatch{changed: make(chan struct{}), current: current}
}

// refresh reads the leader from raft and publishes it if it changed.
func (w *leaderWatch) refresh() Leadership {
	id, addr := w.current()
	w.mu.Lock()
	defer w.mu.Unlock()
	if id != w.id || addr != w.addr {
		w.id, w.addr = id, addr
		w.gen++
		close(w.changed)
		w.changed = make(chan struct{})
	}
	return Leadership{ID: w.id, Addr: w.addr, Gen: w.gen, Changed: w.changed}
}

// LeaderWatch returns the leader this node knows now (none while an election
// runs or while it is cut off from a quorum) and a channel closed as soon as
// that changes: a caller forwarding to the leader drops its call to a
// deposed one at once instead of waiting for a timeout.
func (r *Raft) LeaderWatch() Leadership { return r.leaderWatch.refresh() }

// LastContact is when this follower last heard from the leader (zero on the
// leader itself and before any contact).
func (r *Raft) LastContact() time.Time { return r.raft.LastContact() }
