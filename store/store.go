package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-memdb"
	"github.com/hashicorp/raft"
	"github.com/shoal-dev/shoal/clock"
)

// MaxRetries is how many times Update runs fn again after the FSM answered
// with a conflict.
const MaxRetries = 5

// Proposer replicates an encoded change set (raft on managers) and returns
// the FSM's response once the change set has been applied on this node.
type Proposer interface {
	Propose(ctx context.Context, data []byte) (any, error)
}

// Store is the cluster state and the raft FSM.
type Store struct {
	clk clock.Clock
	log *slog.Logger

	db atomic.Pointer[memdb.MemDB]

	// mu serializes Apply, Restore and local proposals, and guards index.
	mu    sync.Mutex
	index uint64 // last applied log index
	// indexMoved is closed when index changes; nil until a WaitIndex needs it.
	indexMoved chan struct{}
	// lastWrite is the index of the last change set that wrote something;
	// a change set read before it is a conflict (no write skew). It is in
	// snapshots, so every manager answers a change set alike.
	lastWrite uint64

	// updateLock (a one-slot semaphore, so waiting honours ctx) is held by
	// Update from its read to the apply of its change set, as swarmkit's
	// update lock: writes on the leader never race each other.
	updateLock chan struct{}

	proposer atomic.Pointer[proposerBox]

	watchMu     sync.Mutex
	subs        map[*subscriber]struct{}
	watchBuffer int
	dropped     atomic.Uint64
}

type proposerBox struct{ p Proposer }

var _ raft.FSM = (*Store)(nil)

// New returns an empty store that applies its writes locally until
// SetProposer is called.
func New(clk clock.Clock, logger *slog.Logger) *Store {
	s := &Store{
		clk:         clk,
		log:         logger.With("component", "store"),
		subs:        make(map[*subscriber]struct{}),
		watchBuffer: WatchBuffer,
		updateLock:  make(chan struct{}, 1),
	}
	s.db.Store(newDB())
	return s
}

func newDB() *memdb.MemDB {
	schema := &memdb.DBSchema{Tables: make(map[string]*memdb.TableSchema)}
	for _, t := range tables {
		schema.Tables[string(t.Kind())] = t.schema()
	}
	db, err := memdb.NewMemDB(schema)
	if err != nil {
		panic(fmt.Sprintf("store: schema: %v", err)) // static schema: a programming error
	}
	return db
}

// SetProposer routes Update's change sets through p; nil applies them
// locally with the store's own increasing index (for tests of controllers).
func (s *Store) SetProposer(p Proposer) {
	if p == nil {
		s.proposer.Store(nil)
		return
	}
	s.proposer.Store(&proposerBox{p: p})
}

// Index returns the index of the last applied log entry.
func (s *Store) Index() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.index
}

// View runs fn on a consistent snapshot of the store.
func (s *Store) View(fn func(tx ReadTx)) {
	fn(s.readTx())
}

func (s *Store) readTx() *Tx {
	return &Tx{txn: s.db.Load().Txn(false), readOnly: true}
}

// Update runs fn on a snapshot, turns its writes into a change set and
// proposes it, holding the update lock from the read to the apply: updates
// on one manager (the leader: the others forward writes) see each other's
// results and never conflict. An error from fn aborts with nothing
// written; a change set with no writes proposes nothing. The change set
// carries the index it was read at, and the FSM refuses it with ErrConflict
// if anything was written since (a write from an earlier leader, or one
// whose propose timed out but applied later); then fn runs again on a fresh
// snapshot after a short jittered pause, up to MaxRetries times, so callers
// do not see conflicts they did not cause. Conflicts that fn itself sees (a
// stale object handed to Put) are fn errors and are not retried. fn must not
// call Update.
func (s *Store) Update(ctx context.Context, fn func(tx *Tx) error) error {
	for attempt := 0; ; attempt++ {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("update: %w", err)
		}
		fnFailed, err := s.update(ctx, fn)
		if err == nil || fnFailed || !errors.Is(err, ErrConflict) {
			return err
		}
		if attempt == MaxRetries {
			return fmt.Errorf("update: gave up after %d retries: %w", MaxRetries, err)
		}
		s.log.Debug("update conflict, retrying", "attempt", attempt+1, "err", err)
		// Real time, not s.clk: a pause, not a schedule.
		pause := time.Duration(float64(retryBase<<attempt) * (0.5 + rand.Float64()))
		t := time.NewTimer(pause)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("update: %w", ctx.Err())
		}
	}
}

// retryBase is the first pause before Update runs fn again after an FSM
// conflict; it doubles with each retry.
const retryBase = 2 * time.Millisecond

// update makes one attempt; fnFailed says the error came from fn.
func (s *Store) update(ctx context.Context, fn func(tx *Tx) error) (fnFailed bool, err error) {
	select {
	case s.updateLock <- struct{}{}:
	case <-ctx.Done():
		return false, fmt.Errorf("update: wait for the update lock: %w", ctx.Err())
	}
	defer func() { <-s.updateLock }()
	s.mu.Lock()
	tx := &Tx{txn: s.db.Load().Txn(false), now: s.clk.Now().UTC()}
	readIndex := s.index
	s.mu.Unlock()
	if err := fn(tx); err != nil {
		return true, err
	}
	cs := tx.changeSet()
	cs.ReadIndex = readIndex
	if len(cs.Ops) == 0 {
		return false, nil
	}
	data, err := json.Marshal(cs)
	if err != nil {
		return false, fmt.Errorf("update: encode change set: %w", err)
	}
	var resp any
	if b := s.proposer.Load(); b != nil {
		resp, err = b.p.Propose(ctx, data)
		if err != nil {
			return false, fmt.Errorf("update: propose: %w", err)
		}
	} else {
		resp = s.applyLocal(data)
	}
	if rerr, ok := resp.(error); ok && rerr != nil {
		return false, fmt.Errorf("update: %w", rerr)
	}
	return false, nil
}

func (s *Store) applyLocal(data []byte) any {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.applyLocked(s.index+1, data)
}

// Apply applies one committed change set (raft.FSM). The response is nil on
// success and an error (wrapping ErrConflict or ErrMalformed) otherwise; a
// failed change set changes nothing. Apply uses nothing but the log entry
// and the current state, so every manager ends in the same state.
func (s *Store) Apply(l *raft.Log) any {
	if l == nil {
		return fmt.Errorf("apply: nil log: %w", ErrMalformed)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.applyLocked(l.Index, l.Data)
}

func (s *Store) applyLocked(index uint64, data []byte) any {
	if index > s.index {
		s.setIndexLocked(index)
	}
	var cs changeSet
	if err := json.Unmarshal(data, &cs); err != nil {
		s.log.Error("malformed log entry", "index", index, "err", err)
		return fmt.Errorf("apply %d: %w: %w", index, ErrMalformed, err)
	}
	if cs.ReadIndex != 0 && cs.ReadIndex < s.lastWrite {
		s.log.Debug("change set rejected", "index", index, "read_index", cs.ReadIndex, "last_write", s.lastWrite)
		return fmt.Errorf("apply %d: read at %d, written at %d since: %w", index, cs.ReadIndex, s.lastWrite, ErrConflict)
	}
	seen := make(map[[2]string]bool, len(cs.Ops))
	txn := s.db.Load().Txn(true)
	changes := make([]Change, 0, len(cs.Ops))
	for _, o := range cs.Ops {
		t, ok := tableByKind[o.Kind]
		var err error
		switch {
		case !ok:
			err = fmt.Errorf("unknown kind %q: %w", o.Kind, ErrMalformed)
		case o.ID == "":
			err = fmt.Errorf("%s: empty id: %w", o.Kind, ErrMalformed)
		case seen[[2]string{string(o.Kind), o.ID}]:
			err = fmt.Errorf("%s %s: written twice: %w", o.Kind, o.ID, ErrMalformed)
		}
		var ch Change
		if err == nil {
			seen[[2]string{string(o.Kind), o.ID}] = true
			ch, err = t.apply(txn, o, index)
		}
		if err != nil {
			txn.Abort()
			if errors.Is(err, ErrConflict) {
				s.log.Debug("change set rejected", "index", index, "err", err)
			} else {
				s.log.Error("change set rejected", "index", index, "err", err)
			}
			return fmt.Errorf("apply %d: %w", index, err)
		}
		changes = append(changes, ch)
	}
	txn.Commit()
	if len(changes) > 0 {
		s.lastWrite = index
		s.publish(Event{Index: index, Changes: changes})
	}
	return nil
}
