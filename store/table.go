package store

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	"github.com/hashicorp/go-memdb"
	"github.com/shoal-dev/shoal/api"
)

// table describes one kind of object stored as *T in a memdb table of the
// same name. Everything kind-specific lives here, so a new kind is a table
// value, an entry in tables and one-line accessors on Tx.
type table[T any] struct {
	kind Kind
	id   func(*T) string
	meta func(*T) *api.Meta
	// indexes are secondary, non-unique string indexes (name -> value);
	// objects whose value is "" are left out of the index.
	indexes map[string]func(*T) string
	// singleton tables hold at most one object.
	singleton bool
	// clone deep-copies an object (the api type's Clone): reads hand out
	// copies, so callers may change what they get.
	clone func(*T) *T
}

// anyTable is the kind-independent face of a table, used by the FSM,
// snapshots and change set encoding.
type anyTable interface {
	Kind() Kind
	schema() *memdb.TableSchema
	// encode turns a pending write of a transaction into an operation.
	encode(id string, w *write) op
	// apply checks and applies one operation in a write txn.
	apply(txn *memdb.Txn, o op, index uint64) (Change, error)
	// dump calls fn for every stored object, in ID order.
	dump(txn *memdb.Txn, fn func(obj any) error) error
	// restore inserts one object from a snapshot.
	restore(txn *memdb.Txn, raw json.RawMessage) error
}

func (t *table[T]) Kind() Kind { return t.kind }

func (t *table[T]) schema() *memdb.TableSchema {
	s := &memdb.TableSchema{
		Name: string(t.kind),
		Indexes: map[string]*memdb.IndexSchema{
			"id": {Name: "id", Unique: true, Indexer: stringIndex[T](t.id)},
		},
	}
	for name, f := range t.indexes {
		s.Indexes[name] = &memdb.IndexSchema{Name: name, AllowMissing: true, Indexer: stringIndex[T](f)}
	}
	return s
}

// stored returns the object with that ID in txn, without the tx's pending writes.
func (t *table[T]) stored(txn *memdb.Txn, id string) *T {
	raw, err := txn.First(string(t.kind), "id", id)
	if err != nil || raw == nil {
		return nil
	}
	return raw.(*T)
}

// lookup returns the object as tx sees it (pending writes first), not copied.
func (t *table[T]) lookup(tx *Tx, id string) (*T, bool) {
	if w, ok := tx.writes[t.kind][id]; ok {
		if w.obj == nil {
			return nil, false
		}
		return w.obj.(*T), true
	}
	o := t.stored(tx.txn, id)
	return o, o != nil
}

// get returns a copy of the object with that ID, or nil.
func (t *table[T]) get(tx *Tx, id string) *T {
	if o, ok := t.lookup(tx, id); ok {
		return t.clone(o)
	}
	return nil
}

// each calls fn for every object tx sees, in ID order, without copying;
// it stops when fn returns false.
func (t *table[T]) each(tx *Tx, fn func(*T) bool) {
	pending := tx.writes[t.kind]
	it, err := tx.txn.Get(string(t.kind), "id")
	if err != nil {
		return
	}
	if len(pending) == 0 {
		for raw := it.Next(); raw != nil; raw = it.Next() {
			if !fn(raw.(*T)) {
				return
			}
		}
		return
	}
	var all []*T
	for raw := it.Next(); raw != nil; raw = it.Next() {
		if _, ok := pending[t.id(raw.(*T))]; !ok {
			all = append(all, raw.(*T))
		}
	}
	for _, w := range pending {
		if w.obj != nil {
			all = append(all, w.obj.(*T))
		}
	}
	slices.SortFunc(all, func(a, b *T) int { return strings.Compare(t.id(a), t.id(b)) })
	for _, o := range all {
		if !fn(o) {
			return
		}
	}
}

// list returns copies of all objects, sorted by ID.
func (t *table[T]) list(tx *Tx) []*T {
	var out []*T
	t.each(tx, func(o *T) bool {
		out = append(out, t.clone(o))
		return true
	})
	return out
}

// first returns a copy of the object with the lowest ID, or nil.
func (t *table[T]) first(tx *Tx) *T {
	var out *T
	t.each(tx, func(o *T) bool {
		out = t.clone(o)
		return false
	})
	return out
}

// where returns copies of the objects whose secondary index value is v,
// sorted by ID.
func (t *table[T]) where(tx *Tx, index, v string) []*T {
	f := t.indexes[index]
	if f == nil || v == "" {
		return nil
	}
	pending := tx.writes[t.kind]
	var out []*T
	it, err := tx.txn.Get(string(t.kind), index, v)
	if err != nil {
		return nil
	}
	for raw := it.Next(); raw != nil; raw = it.Next() {
		if _, ok := pending[t.id(raw.(*T))]; !ok {
			out = append(out, raw.(*T))
		}
	}
	for _, w := range pending {
		if w.obj != nil && f(w.obj.(*T)) == v {
			out = append(out, w.obj.(*T))
		}
	}
	slices.SortFunc(out, func(a, b *T) int { return strings.Compare(t.id(a), t.id(b)) })
	for i, o := range out {
		out[i] = t.clone(o)
	}
	return out
}

// find resolves ref the way docker does: the exact ID, else every object
// whose nameIndex value is ref, else every ID that starts with ref (so more
// than one means ambiguous). A name beats an ID prefix: a service named "g"
// is found even when another's ID starts with "g".
func (t *table[T]) find(tx *Tx, ref, nameIndex string) []*T {
	if ref == "" {
		return nil
	}
	if o, ok := t.lookup(tx, ref); ok {
		return []*T{t.clone(o)}
	}
	if named := t.where(tx, nameIndex, ref); len(named) > 0 {
		return named
	}
	var prefixed []*T
	t.each(tx, func(o *T) bool {
		if strings.HasPrefix(t.id(o), ref) {
			prefixed = append(prefixed, t.clone(o))
		}
		return true
	})
	return prefixed
}

// entry returns the pending write for id, creating it with the stored
// version as its base.
func (t *table[T]) entry(tx *Tx, id string) *write {
	if tx.writes == nil {
		tx.writes = make(map[Kind]map[string]*write)
	}
	m := tx.writes[t.kind]
	if m == nil {
		m = make(map[string]*write)
		tx.writes[t.kind] = m
	}
	w, ok := m[id]
	if !ok {
		w = &write{}
		if o := t.stored(tx.txn, id); o != nil {
			w.base = t.meta(o).Version
			w.baseCreated = t.meta(o).CreatedAt
		}
		m[id] = w
	}
	return w
}

// put records obj as a pending write. obj.Meta.Version must be the version
// tx sees (0 for a new object).
func (t *table[T]) put(tx *Tx, obj *T) error {
	if tx.readOnly {
		return ErrReadOnly
	}
	if obj == nil {
		return fmt.Errorf("put %s: nil object", t.kind)
	}
	id := t.id(obj)
	if id == "" {
		return fmt.Errorf("put %s: empty id", t.kind)
	}
	v := t.meta(obj).Version
	cur, ok := t.lookup(tx, id)
	switch {
	case ok && v == 0 && t.meta(cur).Version != 0:
		return fmt.Errorf("put %s %s: %w", t.kind, id, ErrExists)
	case ok && v != t.meta(cur).Version:
		return fmt.Errorf("put %s %s: version %d, current %d: %w", t.kind, id, v, t.meta(cur).Version, ErrConflict)
	case !ok && v != 0:
		return fmt.Errorf("put %s %s: version %d: %w", t.kind, id, v, ErrNotFound)
	case !ok && t.singleton && t.first(tx) != nil:
		return fmt.Errorf("put %s %s: only one %s allowed: %w", t.kind, id, t.kind, ErrExists)
	}
	w := t.entry(tx, id)
	c := t.clone(obj)
	m := t.meta(c)
	m.Version = w.base
	m.UpdatedAt = tx.now
	m.CreatedAt = tx.now
	if w.base != 0 {
		m.CreatedAt = w.baseCreated
	}
	// Encoded now, so the tx knows its size as it grows (Full).
	raw, err := json.Marshal(c)
	if err != nil {
		return fmt.Errorf("put %s %s: encode: %w", t.kind, id, err)
	}
	if len(raw) > MaxObjectBytes {
		return fmt.Errorf("%s %s would be %d bytes, at most %d: %w", t.kind, id, len(raw), MaxObjectBytes, ErrTooLarge)
	}
	size := tx.size - w.size() + opOverhead + len(raw)
	if size > MaxEntryBytes {
		return fmt.Errorf("put %s %s: the change set would be %d bytes, at most %d (write in batches: Tx.Full, UpdateEach): %w",
			t.kind, id, size, MaxEntryBytes, ErrTooLarge)
	}
	tx.size = size
	w.obj, w.raw = c, raw
	return nil
}

// del records the deletion of the object with that ID.
func (t *table[T]) del(tx *Tx, id string) error {
	if tx.readOnly {
		return ErrReadOnly
	}
	if _, ok := t.lookup(tx, id); !ok {
		return fmt.Errorf("delete %s %s: %w", t.kind, id, ErrNotFound)
	}
	w := t.entry(tx, id)
	tx.size -= w.size()
	if w.base == 0 {
		// Created in this tx: nothing to tell the FSM.
		delete(tx.writes[t.kind], id)
		return nil
	}
	w.obj, w.raw = nil, nil
	tx.size += opOverhead
	return nil
}

func (t *table[T]) encode(id string, w *write) op {
	o := op{Kind: t.kind, ID: id, Version: w.base}
	if w.obj == nil {
		o.Op = opDelete
		return o
	}
	o.Op, o.Object = opPut, w.raw
	return o
}

func (t *table[T]) apply(txn *memdb.Txn, o op, index uint64) (Change, error) {
	cur := t.stored(txn, o.ID)
	ch := Change{Kind: t.kind, ID: o.ID, Version: index}
	switch o.Op {
	case opPut:
		obj := new(T)
		if err := json.Unmarshal(o.Object, obj); err != nil {
			return ch, fmt.Errorf("put %s %s: %w: %w", t.kind, o.ID, ErrMalformed, err)
		}
		if t.id(obj) != o.ID {
			return ch, fmt.Errorf("put %s %s: object id %q: %w", t.kind, o.ID, t.id(obj), ErrMalformed)
		}
		switch {
		case cur == nil && o.Version != 0:
			return ch, fmt.Errorf("put %s %s: version %d, gone: %w: %w", t.kind, o.ID, o.Version, ErrConflict, ErrNotFound)
		case cur == nil && t.singleton && t.storedFirst(txn) != nil:
			return ch, fmt.Errorf("put %s %s: only one %s allowed: %w: %w", t.kind, o.ID, t.kind, ErrConflict, ErrExists)
		case cur != nil && o.Version == 0:
			return ch, fmt.Errorf("put %s %s: %w: %w", t.kind, o.ID, ErrConflict, ErrExists)
		case cur != nil && o.Version != t.meta(cur).Version:
			return ch, fmt.Errorf("put %s %s: version %d, current %d: %w", t.kind, o.ID, o.Version, t.meta(cur).Version, ErrConflict)
		}
		ch.Op = OpCreate
		if cur != nil {
			ch.Op = OpUpdate
		}
		t.meta(obj).Version = index
		if err := txn.Insert(string(t.kind), obj); err != nil {
			return ch, fmt.Errorf("put %s %s: %w", t.kind, o.ID, err)
		}
	case opDelete:
		switch {
		case cur == nil:
			return ch, fmt.Errorf("delete %s %s: %w: %w", t.kind, o.ID, ErrConflict, ErrNotFound)
		case o.Version != t.meta(cur).Version:
			return ch, fmt.Errorf("delete %s %s: version %d, current %d: %w", t.kind, o.ID, o.Version, t.meta(cur).Version, ErrConflict)
		}
		ch.Op = OpDelete
		if err := txn.Delete(string(t.kind), cur); err != nil {
			return ch, fmt.Errorf("delete %s %s: %w", t.kind, o.ID, err)
		}
	default:
		return ch, fmt.Errorf("%s %s: unknown op %q: %w", t.kind, o.ID, o.Op, ErrMalformed)
	}
	return ch, nil
}

func (t *table[T]) storedFirst(txn *memdb.Txn) *T {
	raw, err := txn.First(string(t.kind), "id")
	if err != nil || raw == nil {
		return nil
	}
	return raw.(*T)
}

func (t *table[T]) dump(txn *memdb.Txn, fn func(obj any) error) error {
	it, err := txn.Get(string(t.kind), "id")
	if err != nil {
		return err
	}
	for raw := it.Next(); raw != nil; raw = it.Next() {
		if err := fn(raw); err != nil {
			return err
		}
	}
	return nil
}

func (t *table[T]) restore(txn *memdb.Txn, raw json.RawMessage) error {
	obj := new(T)
	if err := json.Unmarshal(raw, obj); err != nil {
		return fmt.Errorf("restore %s: %w: %w", t.kind, ErrMalformed, err)
	}
	if t.id(obj) == "" || t.meta(obj).Version == 0 {
		return fmt.Errorf("restore %s %q: missing id or version: %w", t.kind, t.id(obj), ErrMalformed)
	}
	if t.stored(txn, t.id(obj)) != nil {
		return fmt.Errorf("restore %s %s: duplicate: %w", t.kind, t.id(obj), ErrMalformed)
	}
	return txn.Insert(string(t.kind), obj)
}

// stringIndex is a memdb index over a string derived from *T, with the same
// key layout as memdb.StringFieldIndex (so "id_prefix" lookups work).
type stringIndex[T any] func(*T) string

func (f stringIndex[T]) FromObject(raw any) (bool, []byte, error) {
	o, ok := raw.(*T)
	if !ok {
		return false, nil, fmt.Errorf("index: unexpected %T", raw)
	}
	v := f(o)
	if v == "" {
		return false, nil, nil
	}
	return true, []byte(v + "\x00"), nil
}

func (f stringIndex[T]) FromArgs(args ...any) ([]byte, error) {
	if len(args) != 1 {
		return nil, fmt.Errorf("index: want one argument, got %d", len(args))
	}
	s, ok := args[0].(string)
	if !ok {
		return nil, fmt.Errorf("index: argument must be a string, got %T", args[0])
	}
	return []byte(s + "\x00"), nil
}

func (f stringIndex[T]) PrefixFromArgs(args ...any) ([]byte, error) {
	k, err := f.FromArgs(args...)
	if err != nil {
		return nil, err
	}
	return k[:len(k)-1], nil
}
