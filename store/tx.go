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
}

var _ ReadTx = (*Tx)(nil)

// write is a pending change to one object.
type write struct {
	obj         any // *T, the tx's private copy; nil means delete
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

// changeSet returns the tx's writes as operations, in table order then ID
// order, with timestamps stamped from now.
func (tx *Tx) changeSet(now time.Time) (changeSet, error) {
	var cs changeSet
	for _, t := range tables {
		pending := tx.writes[t.Kind()]
		ids := make([]string, 0, len(pending))
		for id := range pending {
			ids = append(ids, id)
		}
		slices.Sort(ids)
		for _, id := range ids {
			o, err := t.encode(id, pending[id], now)
			if err != nil {
				return changeSet{}, err
			}
			cs.Ops = append(cs.Ops, o)
		}
	}
	return cs, nil
}
