package store

import (
	"encoding/json"
	"slices"
	"time"

	"github.com/hashicorp/go-memdb"
)

// Tx is a transaction in Update: it reads a consistent snapshot overlaid
// with its own pending writes and records those writes as a change set.
// It implements ReadTx. A Tx is used by one goroutine, only inside fn.
type Tx struct {
	txn      *memdb.Txn // read-only memdb snapshot
	readOnly bool
	writes   map[Kind]map[string]*write
	now      time.Time // stamped on written objects
	size     int       // bytes of the change set so far, about
}

// Raft entries are bounded by bytes: one entry is replicated, written to
// every manager's log and applied as a unit, and a multi-MB entry stalls
// heartbeats behind it. Writers of many objects (the scheduler, allocator,
// orchestrator, dispatcher) fill a change set until Full and continue in
// the next (UpdateEach); past MaxEntryBytes a Put fails with ErrTooLarge.
const (
	// FullBytes is where Full says a change set has enough.
	FullBytes = 256 << 10
	// MaxEntryBytes is the hard limit of one change set.
	MaxEntryBytes = 2 << 20
	// opOverhead is about what an op costs beside its object.
	opOverhead = 64
)

// Full reports whether the tx's change set has reached FullBytes: a writer
// of many objects stops there and writes the rest in another Update.
func (tx *Tx) Full() bool { return tx.size >= FullBytes }

// Size is about how many bytes the tx's change set holds so far.
func (tx *Tx) Size() int { return tx.size }

var _ ReadTx = (*Tx)(nil)

// write is a pending change to one object.
type write struct {
	obj         any    // *T, the tx's private copy; nil means delete
	raw         []byte // obj encoded, with its meta stamped
	base        uint64
	baseCreated time.Time
}

// changeSet is what goes through raft.
type changeSet struct {
	// ReadIndex is the store's applied index when the writer read; the FSM
	// refuses the change set if something was written after it. 0 (hand-made
	// change sets) skips the check.
	ReadIndex uint64 `json:"read_index,omitempty"`
	Ops       []op   `json:"ops"`
}

const (
	opPut    = "put"
	opDelete = "delete"
)

// op is one write. Version is the version the writer read: 0 for a new
// object, else the version stored when the tx began.
type op struct {
	Kind    Kind            `json:"kind"`
	Op      string          `json:"op"`
	ID      string          `json:"id"`
	Version uint64          `json:"version"`
	Object  json.RawMessage `json:"object,omitempty"`
}

// size is what the write adds to the change set (0 before its first Put).
func (w *write) size() int {
	if w.obj == nil && w.raw == nil {
		return 0
	}
	return opOverhead + len(w.raw)
}

// changeSet returns the tx's writes as operations, in table order then ID
// order.
func (tx *Tx) changeSet() changeSet {
	var cs changeSet
	for _, t := range tables {
		pending := tx.writes[t.Kind()]
		ids := make([]string, 0, len(pending))
		for id := range pending {
			ids = append(ids, id)
		}
		slices.Sort(ids)
		for _, id := range ids {
			cs.Ops = append(cs.Ops, t.encode(id, pending[id]))
		}
	}
	return cs
}
