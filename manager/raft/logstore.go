package raft

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"

	"github.com/hashicorp/go-hclog"
	hraft "github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	wal "github.com/hashicorp/raft-wal"
	"github.com/hashicorp/raft-wal/metadb"
	bolt "go.etcd.io/bbolt"
)

// The raft log and stable store is a hashicorp/raft-wal write-ahead log in
// DataDir/wal: segment files that are deleted whole once a snapshot covers
// them, so the log shrinks again (raft-boltdb's file never shrinks: 87 MB
// after three create/remove cycles of 10k tasks with an empty store).
const (
	walDir = "wal"
	// walSegmentSize is small so that compaction frees space soon: segments
	// are preallocated, and only whole segments behind the trailing logs go.
	walSegmentSize = 1 << 20
	lockFile       = "lock"
	// migratedSuffix marks the raft.db a migration copied, kept as a backup.
	migratedSuffix = ".migrated"
)

// ErrLocked: another process has the raft data directory open.
var ErrLocked = errors.New("raft: data dir in use by another process (is shoal already running on it?)")

// lockDir takes an exclusive flock on dir/lock so that two processes never
// open the same log. The lock goes with the process, even on a crash.
func lockDir(dir string) (release func(), err error) {
	path := filepath.Join(dir, lockFile)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("raft: lock %s: %w", path, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("%w: %s", ErrLocked, path)
		}
		return nil, fmt.Errorf("raft: lock %s: %w", path, err)
	}
	return func() { f.Close() }, nil
}

// logStore is the WAL with a Close that also closes its meta database
// (raft-wal v0.4.0's Close leaves it open, and its flock with it, so the
// same process could not open the directory again).
type logStore struct {
	*wal.WAL
	meta *metadb.BoltMetaDB
}

func openWAL(dir string, hlog hclog.Logger) (*logStore, error) {
	meta := &metadb.BoltMetaDB{}
	w, err := wal.Open(dir, wal.WithSegmentSize(walSegmentSize), wal.WithLogger(hlog.Named("wal")), wal.WithMetaStore(meta))
	if err != nil {
		meta.Close()
		return nil, err
	}
	return &logStore{WAL: w, meta: meta}, nil
}

func (l *logStore) Close() error {
	err := l.WAL.Close()
	if merr := l.meta.Close(); err == nil {
		err = merr
	}
	return err
}

// openLogStore opens (or creates) the WAL in dir/wal, first migrating a
// raft.db left by an older version.
func openLogStore(dir string, hlog hclog.Logger) (*logStore, error) {
	path := filepath.Join(dir, walDir)
	if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
		if _, err := os.Stat(filepath.Join(dir, dbFile)); err == nil {
			if err := migrateBolt(dir, hlog); err != nil {
				return nil, err
			}
		}
	}
	if err := os.MkdirAll(path, 0o700); err != nil {
		return nil, fmt.Errorf("raft: log dir: %w", err)
	}
	w, err := openWAL(path, hlog)
	if err != nil {
		return nil, fmt.Errorf("raft: open log %s: %w", path, err)
	}
	return w, nil
}

// stableKeys are the keys hashicorp/raft keeps in its stable store.
var (
	stableUint64Keys = [][]byte{[]byte("CurrentTerm"), []byte("LastVoteTerm")}
	stableBytesKeys  = [][]byte{[]byte("LastVoteCand")}
)

// migrateBolt copies raft.db's log and stable store into a new WAL, built in
// a temporary directory and renamed into place only when complete; raft.db is
// then renamed to raft.db.migrated, a backup nobody reads.
func migrateBolt(dir string, hlog hclog.Logger) (err error) {
	src := filepath.Join(dir, dbFile)
	tmp := filepath.Join(dir, walDir+".tmp")
	if err := os.RemoveAll(tmp); err != nil { // a migration that died half way
		return fmt.Errorf("raft: migrate %s: %w", src, err)
	}
	if err := os.Mkdir(tmp, 0o700); err != nil {
		return fmt.Errorf("raft: migrate %s: %w", src, err)
	}
	old, err := raftboltdb.New(raftboltdb.Options{Path: src, BoltOptions: &bolt.Options{ReadOnly: true}})
	if err != nil {
		return fmt.Errorf("raft: migrate: open %s: %w", src, err)
	}
	defer old.Close()
	w, err := openWAL(tmp, hlog)
	if err != nil {
		return fmt.Errorf("raft: migrate: open %s: %w", tmp, err)
	}
	n, err := copyLogs(old, w)
	if cerr := w.Close(); err == nil && cerr != nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("raft: migrate %s: %w", src, err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, walDir)); err != nil {
		return fmt.Errorf("raft: migrate %s: %w", src, err)
	}
	if err := os.Rename(src, src+migratedSuffix); err != nil {
		return fmt.Errorf("raft: migrate %s: keep backup: %w", src, err)
	}
	hlog.Info("migrated raft log from raft.db to wal", "entries", n, "backup", src+migratedSuffix)
	return nil
}

// copyLogs copies every log entry and the stable keys from src to dst.
func copyLogs(src, dst interface {
	hraft.LogStore
	hraft.StableStore
}) (int, error) {
	for _, k := range stableUint64Keys {
		v, err := src.GetUint64(k)
		if errors.Is(err, raftboltdb.ErrKeyNotFound) {
			continue
		}
		if err != nil {
			return 0, fmt.Errorf("read %s: %w", k, err)
		}
		if err := dst.SetUint64(k, v); err != nil {
			return 0, fmt.Errorf("write %s: %w", k, err)
		}
	}
	for _, k := range stableBytesKeys {
		v, err := src.Get(k)
		if errors.Is(err, raftboltdb.ErrKeyNotFound) {
			continue
		}
		if err != nil {
			return 0, fmt.Errorf("read %s: %w", k, err)
		}
		if err := dst.Set(k, v); err != nil {
			return 0, fmt.Errorf("write %s: %w", k, err)
		}
	}
	first, err := src.FirstIndex()
	if err != nil {
		return 0, fmt.Errorf("first index: %w", err)
	}
	last, err := src.LastIndex()
	if err != nil {
		return 0, fmt.Errorf("last index: %w", err)
	}
	if last == 0 {
		return 0, nil
	}
	const batch = 256
	n := 0
	buf := make([]*hraft.Log, 0, batch)
	for i := first; i <= last; i++ {
		l := new(hraft.Log)
		if err := src.GetLog(i, l); err != nil {
			return n, fmt.Errorf("read entry %d: %w", i, err)
		}
		buf = append(buf, l)
		if len(buf) == batch || i == last {
			if err := dst.StoreLogs(buf); err != nil {
				return n, fmt.Errorf("write entries %d-%d: %w", buf[0].Index, i, err)
			}
			n += len(buf)
			buf = buf[:0]
		}
	}
	return n, nil
}
