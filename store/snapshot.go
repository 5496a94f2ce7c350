package store

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"github.com/hashicorp/go-memdb"
	"github.com/hashicorp/raft"
)

// The snapshot is a stream of JSON values: a header, then one record per
// object, tables in schema order and objects in ID order.

const snapshotFormat = 1

type snapshotHeader struct {
	Format int    `json:"format"`
	Index  uint64 `json:"index"`
	// LastWrite is the store's lastWrite (absent in older snapshots: Index).
	LastWrite uint64 `json:"last_write,omitempty"`
}

type snapshotRecord struct {
	Kind   Kind            `json:"kind"`
	Object json.RawMessage `json:"object"`
}

type fsmSnapshot struct {
	txn       *memdb.Txn
	index     uint64
	lastWrite uint64
}

// Snapshot captures the current state (raft.FSM); the returned value writes
// it out later, concurrently with Apply.
func (s *Store) Snapshot() (raft.FSMSnapshot, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return &fsmSnapshot{txn: s.db.Load().Txn(false), index: s.index, lastWrite: s.lastWrite}, nil
}

func (f *fsmSnapshot) Persist(sink raft.SnapshotSink) error {
	if err := f.write(sink); err != nil {
		_ = sink.Cancel()
		return fmt.Errorf("store: persist snapshot: %w", err)
	}
	if err := sink.Close(); err != nil {
		return fmt.Errorf("store: persist snapshot: %w", err)
	}
	return nil
}

func (f *fsmSnapshot) write(w io.Writer) error {
	bw := bufio.NewWriter(w)
	enc := json.NewEncoder(bw)
	if err := enc.Encode(snapshotHeader{Format: snapshotFormat, Index: f.index, LastWrite: f.lastWrite}); err != nil {
		return err
	}
	for _, t := range tables {
		err := t.dump(f.txn, func(obj any) error {
			raw, err := json.Marshal(obj)
			if err != nil {
				return err
			}
			return enc.Encode(snapshotRecord{Kind: t.Kind(), Object: raw})
		})
		if err != nil {
			return fmt.Errorf("%s: %w", t.Kind(), err)
		}
	}
	return bw.Flush()
}

func (f *fsmSnapshot) Release() {}

// Restore replaces the whole state with a snapshot written by Persist
// (raft.FSM), keeping object versions. On error the state is unchanged.
// Watchers get an Event with Reset set.
func (s *Store) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	db, h, err := readSnapshot(rc)
	if err != nil {
		return fmt.Errorf("store: restore: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.db.Store(db)
	s.setIndexLocked(h.Index)
	s.lastWrite = h.LastWrite
	if h.LastWrite == 0 {
		s.lastWrite = h.Index
	}
	s.log.Info("restored snapshot", "index", h.Index)
	s.publish(Event{Index: h.Index, Reset: true})
	return nil
}

func readSnapshot(r io.Reader) (*memdb.MemDB, snapshotHeader, error) {
	dec := json.NewDecoder(bufio.NewReader(r))
	var h snapshotHeader
	if err := dec.Decode(&h); err != nil {
		return nil, snapshotHeader{}, fmt.Errorf("header: %w: %w", ErrMalformed, err)
	}
	if h.Format != snapshotFormat {
		return nil, snapshotHeader{}, fmt.Errorf("format %d: %w", h.Format, ErrMalformed)
	}
	db := newDB()
	txn := db.Txn(true)
	defer txn.Abort()
	for {
		var rec snapshotRecord
		err := dec.Decode(&rec)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, snapshotHeader{}, fmt.Errorf("record: %w: %w", ErrMalformed, err)
		}
		t, ok := tableByKind[rec.Kind]
		if !ok {
			return nil, snapshotHeader{}, fmt.Errorf("unknown kind %q: %w", rec.Kind, ErrMalformed)
		}
		if err := t.restore(txn, rec.Object); err != nil {
			return nil, snapshotHeader{}, err
		}
	}
	txn.Commit()
	return db, h, nil
}
