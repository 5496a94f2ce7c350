package raft

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	hraft "github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
)

// TestMigrateBoltLog: a data dir of an older version (raft.db) opens with
// its log, term and vote intact; raft.db stays as a backup.
func TestMigrateBoltLog(t *testing.T) {
	logger := testLogger(t)
	dir := filepath.Join(t.TempDir(), "raft")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	old, err := raftboltdb.NewBoltStore(filepath.Join(dir, dbFile))
	if err != nil {
		t.Fatal(err)
	}
	var logs []*hraft.Log
	for i := uint64(5); i <= 600; i++ {
		logs = append(logs, &hraft.Log{Index: i, Term: 3, Type: hraft.LogCommand, Data: []byte{byte(i)}})
	}
	if err := old.StoreLogs(logs); err != nil {
		t.Fatal(err)
	}
	if err := old.SetUint64([]byte("CurrentTerm"), 3); err != nil {
		t.Fatal(err)
	}
	if err := old.Set([]byte("LastVoteCand"), []byte("m1")); err != nil {
		t.Fatal(err)
	}
	old.Close()

	s, err := openLogStore(dir, newHclog(logger, ""))
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	defer s.Close()
	first, _ := s.FirstIndex()
	last, _ := s.LastIndex()
	if first != 5 || last != 600 {
		t.Fatalf("got log %d-%d, want 5-600", first, last)
	}
	var l hraft.Log
	if err := s.GetLog(77, &l); err != nil || l.Term != 3 || !slices.Equal(l.Data, []byte{77}) {
		t.Fatalf("got entry 77 %+v (err %v), want term 3 data [77]", l, err)
	}
	if term, err := s.GetUint64([]byte("CurrentTerm")); err != nil || term != 3 {
		t.Fatalf("got term %d (err %v), want 3", term, err)
	}
	if cand, err := s.Get([]byte("LastVoteCand")); err != nil || string(cand) != "m1" {
		t.Fatalf("got vote %q (err %v), want m1", cand, err)
	}
	if _, err := os.Stat(filepath.Join(dir, dbFile+migratedSuffix)); err != nil {
		t.Fatalf("backup: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, dbFile)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("raft.db still there (err %v): it would be migrated again", err)
	}
}

func TestDataDirLock(t *testing.T) {
	dir := t.TempDir()
	release, err := lockDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := lockDir(dir); !errors.Is(err, ErrLocked) {
		t.Fatalf("second lock: got %v, want ErrLocked", err)
	}
	release()
	release2, err := lockDir(dir)
	if err != nil {
		t.Fatalf("lock after release: %v", err)
	}
	release2()
}

func TestSnapshotRules(t *testing.T) {
	for _, tc := range []struct {
		since, last uint64
		want        bool
	}{
		{0, 0, false},
		{MinSnapshotBytes, 0, false},
		{MinSnapshotBytes + 1, 0, true},
		{5 << 20, 8 << 20, false},
		{9 << 20, 8 << 20, true},
	} {
		if got := snapshotDue(tc.since, tc.last); got != tc.want {
			t.Errorf("snapshotDue(%d, %d) = %v, want %v", tc.since, tc.last, got, tc.want)
		}
	}
	for _, tc := range []struct{ avg, want uint64 }{
		{0, maxTrailingLogs}, {1, maxTrailingLogs}, {1024, 1024}, {256 << 10, minTrailingLogs},
	} {
		if got := trailingLogs(tc.avg); got != tc.want {
			t.Errorf("trailingLogs(%d) = %d, want %d", tc.avg, got, tc.want)
		}
	}
}

// TestSnapshotBySize: entries far below the count threshold but over
// MinSnapshotBytes bring a snapshot, counted, and the log is compacted.
func TestSnapshotBySize(t *testing.T) {
	logger := testLogger(t)
	n := startNode(t, "solo", nil, logger)
	if err := n.Bootstrap(); err != nil {
		t.Fatalf("bootstrap: %v", err)
	}
	waitLeader(t, n)
	entry := make([]byte, 64<<10)
	for range 2 * MinSnapshotBytes / len(entry) {
		if _, err := n.Apply(ctxTimeout(t, 5*time.Second), entry); err != nil {
			t.Fatalf("apply: %v", err)
		}
	}
	waitFor(t, "a snapshot by size", func() bool {
		v, _ := metricValue(t, n, "shoal_raft_size_snapshots_total")
		return v >= 1
	})
	first, _ := n.store.FirstIndex()
	last, _ := n.store.LastIndex()
	if kept := last - first + 1; kept > TrailingBytes/uint64(len(entry))+8 {
		t.Fatalf("got %d entries kept after the snapshot (%d-%d), want about %d", kept, first, last, TrailingBytes/len(entry))
	}
}
