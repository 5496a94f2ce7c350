package raft

import (
	"errors"
	"sync/atomic"
	"time"

	hraft "github.com/hashicorp/raft"
)

// Snapshots come by size as well as by count: hashicorp/raft snapshots every
// SnapshotThreshold entries, which with entries of up to 256 KiB is gigabytes
// of log. So a snapshot is also taken once the entries applied since the last
// one exceed max(MinSnapshotBytes, size of the last snapshot): the log then
// stays within a small multiple of the state it describes. The entries kept
// after a snapshot for slow followers (TrailingLogs) are capped by bytes too.
const (
	// MinSnapshotBytes of log since the last snapshot allow a snapshot by size.
	MinSnapshotBytes = 1 << 20
	// TrailingBytes bounds the log kept behind a snapshot for slow
	// followers; one further behind gets the snapshot.
	TrailingBytes = 1 << 20
	// minTrailingLogs and maxTrailingLogs clamp the trailing entry count
	// (hashicorp/raft's default is the maximum).
	minTrailingLogs = 16
	maxTrailingLogs = 10240
	// sizeCheckInterval is how often the size rule is checked.
	sizeCheckInterval = time.Second
)

// sizeFSM counts the bytes and entries applied since the last snapshot.
// Apply and Snapshot run on raft's FSM goroutine, one at a time.
type sizeFSM struct {
	hraft.FSM
	bytes, entries atomic.Uint64
}

func (f *sizeFSM) Apply(l *hraft.Log) any {
	f.bytes.Add(uint64(len(l.Data)))
	f.entries.Add(1)
	return f.FSM.Apply(l)
}

func (f *sizeFSM) Snapshot() (hraft.FSMSnapshot, error) {
	s, err := f.FSM.Snapshot()
	if err == nil {
		f.bytes.Store(0)
		f.entries.Store(0)
	}
	return s, err
}

// snapshotDue says whether since bytes of log justify a snapshot, given the
// size of the last one.
func snapshotDue(since, lastSnapshot uint64) bool {
	return since > max(MinSnapshotBytes, lastSnapshot)
}

// trailingLogs is how many entries of avg bytes fit in TrailingBytes.
func trailingLogs(avg uint64) uint64 {
	if avg == 0 {
		return maxTrailingLogs
	}
	return min(max(TrailingBytes/avg, minTrailingLogs), maxTrailingLogs)
}

// snapshotBySize checks the size rule every sizeCheckInterval until Shutdown.
func (r *Raft) snapshotBySize(snaps hraft.SnapshotStore) {
	defer r.wg.Done()
	tick := time.NewTicker(sizeCheckInterval)
	defer tick.Stop()
	lastSize := func() uint64 {
		if list, err := snaps.List(); err == nil && len(list) > 0 {
			return uint64(list[0].Size)
		}
		return 0
	}
	last := lastSize()
	var avg uint64
	for {
		select {
		case <-tick.C:
		case <-r.stop:
			return
		}
		bytes, entries := r.fsm.bytes.Load(), r.fsm.entries.Load()
		if entries > 0 {
			avg = bytes / entries
		}
		r.setTrailingLogs(trailingLogs(avg))
		if !snapshotDue(bytes, last) {
			continue
		}
		err := r.raft.Snapshot().Error()
		switch {
		case err == nil:
			r.metrics.sizeSnapshots.Inc()
			last = lastSize()
			r.logger.Info("snapshot by size", "log_bytes", bytes, "entries", entries, "snapshot_bytes", last)
		case errors.Is(err, hraft.ErrNothingNewToSnapshot):
		default:
			r.logger.Warn("snapshot by size", "log_bytes", bytes, "err", err)
		}
	}
}

// setTrailingLogs changes TrailingLogs when it moved by more than a tenth.
func (r *Raft) setTrailingLogs(n uint64) {
	rc := r.raft.ReloadableConfig()
	if cur := rc.TrailingLogs; n*10 > cur*9 && n*10 < cur*11 {
		return
	}
	rc.TrailingLogs = n
	if err := r.raft.ReloadConfig(rc); err != nil {
		r.logger.Warn("set trailing logs", "trailing_logs", n, "err", err)
	}
}
