package raft

import (
	"errors"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"

	hraft "github.com/hashicorp/raft"
)

// ExitStorage is the exit code of a process stopped by a StorageError.
const ExitStorage = 3

// StorageError is raft state on disk that cannot be read: a damaged log
// entry, log file or snapshot. It names the file (and the entry) and says how
// to recover, since restarting will not help.
type StorageError struct {
	Node  string // this manager's node ID, for the recovery steps
	Op    string // what failed: "open", "read", "open snapshot", ...
	Path  string // the file or directory
	Index uint64 // the log entry, 0 when not about one entry
	Err   error
}

func (e *StorageError) Error() string {
	what := e.Path
	if e.Index > 0 {
		what = fmt.Sprintf("entry %d of %s", e.Index, e.Path)
	}
	node := e.Node
	if node == "" {
		node = "NODE"
	}
	return fmt.Sprintf("raft storage: %s %s: %v\n%s", e.Op, what, e.Err, strings.ReplaceAll(recoverySteps, "NODE", node))
}

func (e *StorageError) Unwrap() error { return e.Err }

// ExitCode is the exit code for a process that stops on this error.
func (e *StorageError) ExitCode() int { return ExitStorage }

// recoverySteps is README's "Recovering a manager" in short.
const recoverySteps = `This manager's raft data is damaged and restarting will not repair it; the other managers hold the cluster state. To recover (README "Recovering a manager"):
  1. on a healthy manager: shoal node demote NODE, then shoal node rm --force NODE
  2. here: move this node's data directory away (keep it for inspection)
  3. here: shoal join --token MANAGER-TOKEN --advertise-addr ADDR --data-dir DIR LEADER:2377
If this was the only manager, the cluster state is lost unless a copy of the data directory exists.`

// checkLog reads every entry of the log store once, so that a damaged entry
// stops Open with a StorageError instead of a panic inside hashicorp/raft
// (which panics on a log entry it cannot read). Stores that panic on damaged
// pages (bbolt) are caught here too.
// fileOf names the file that holds an entry (the whole store for bbolt, a
// segment for the WAL).
func checkLog(fileOf func(index uint64) string, logs hraft.LogStore) (err error) {
	var index uint64
	path := fileOf(0)
	defer func() {
		if p := recover(); p != nil {
			err = &StorageError{Op: "read", Path: fileOf(index), Index: index, Err: fmt.Errorf("cannot decode it: %v", p)}
		}
	}()
	first, err := logs.FirstIndex()
	if err != nil {
		return &StorageError{Op: "read first index of", Path: path, Err: err}
	}
	last, err := logs.LastIndex()
	if err != nil {
		return &StorageError{Op: "read last index of", Path: path, Err: err}
	}
	if last == 0 {
		return nil
	}
	var l hraft.Log
	for index = first; index <= last; index++ {
		if err := logs.GetLog(index, &l); err != nil {
			return &StorageError{Op: "read", Path: fileOf(index), Index: index, Err: err}
		}
		if l.Index != index {
			return &StorageError{Op: "read", Path: fileOf(index), Index: index, Err: fmt.Errorf("the entry holds index %d", l.Index)}
		}
	}
	return nil
}

// checkSnapshot opens the newest snapshot, which verifies its checksum, as
// hashicorp/raft will when it starts.
func checkSnapshot(dir string, snaps hraft.SnapshotStore) error {
	list, err := snaps.List()
	if err != nil {
		return &StorageError{Op: "list snapshots in", Path: dir, Err: err}
	}
	if len(list) == 0 {
		return nil
	}
	_, rc, err := snaps.Open(list[0].ID)
	if err != nil {
		return &StorageError{Op: "open snapshot", Path: filepath.Join(dir, list[0].ID), Err: err}
	}
	return rc.Close()
}

// storageErr turns an error from hashicorp/raft's start, which reads the
// stable store, the log and the snapshots, into a StorageError naming them.
func storageErr(dataDir string, err error) error {
	var se *StorageError
	if err == nil || errors.As(err, &se) {
		return err
	}
	return &StorageError{Op: "start from", Path: dataDir, Err: err}
}

// segmentOf returns a function naming the segment file of a raft-wal
// directory that holds an entry: the one with the highest base index not
// above it (names are BASEINDEX-ID.wal); the directory itself for index 0
// or when no segment matches.
func segmentOf(dir string) func(index uint64) string {
	return func(index uint64) string {
		if index == 0 {
			return dir
		}
		names, _ := filepath.Glob(filepath.Join(dir, "*.wal"))
		best, bestBase := dir, uint64(0)
		for _, n := range names {
			base, _, ok := strings.Cut(filepath.Base(n), "-")
			b, err := strconv.ParseUint(base, 10, 64)
			if !ok || err != nil || b > index || b < bestBase {
				continue
			}
			best, bestBase = n, b
		}
		return best
	}
}
