package store

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"reflect"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"github.com/shoal-dev/shoal/api"
	"github.com/shoal-dev/shoal/clock"
)

var t0 = time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)

func newStore(t *testing.T) (*Store, *clock.Fake) {
	t.Helper()
	clk := clock.NewFake(t0)
	return New(clk, slog.New(slog.DiscardHandler)), clk
}

func node(id, hostname string) *api.Node {
	return &api.Node{
		ID:          id,
		Spec:        api.NodeSpec{Role: api.RoleWorker, Availability: api.AvailabilityActive, Labels: map[string]string{"zone": "a"}},
		Description: api.NodeDescription{Hostname: hostname},
	}
}

func mustUpdate(t *testing.T, s *Store, fn func(tx *Tx) error) {
	t.Helper()
	if err := s.Update(context.Background(), fn); err != nil {
		t.Fatalf("update: %v", err)
	}
}

func getNode(s *Store, id string) (n *api.Node) {
	s.View(func(tx ReadTx) { n = tx.Node(id) })
	return n
}

// raftProposer stands in for raft on one manager: it numbers entries,
// records them and applies them to the store.
type raftProposer struct {
	mu    sync.Mutex
	s     *Store
	index uint64
	logs  []*raft.Log
	// before, if set, runs before the proposed entry is applied (under mu).
	before func(p *raftProposer)
}

func (p *raftProposer) Propose(_ context.Context, data []byte) (any, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.before != nil {
		p.before(p)
	}
	return p.applyLocked(data), nil
}

func (p *raftProposer) applyLocked(data []byte) any {
	p.index++
	l := &raft.Log{Index: p.index, Term: 1, Type: raft.LogCommand, Data: data}
	p.logs = append(p.logs, l)
	return p.s.Apply(l)
}

// encodeOps crafts a change set by hand.
func encodeOps(t *testing.T, ops ...op) []byte {
	t.Helper()
	b, err := json.Marshal(changeSet{Ops: ops})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func putOp(t *testing.T, kind Kind, id string, version uint64, obj any) op {
	t.Helper()
	raw, err := json.Marshal(obj)
	if err != nil {
		t.Fatal(err)
	}
	return op{Kind: kind, Op: opPut, ID: id, Version: version, Object: raw}
}

// memSink is a raft.SnapshotSink over a buffer.
type memSink struct {
	bytes.Buffer
	closed, cancelled bool
}

func (m *memSink) ID() string    { return "mem" }
func (m *memSink) Cancel() error { m.cancelled = true; return nil }
func (m *memSink) Close() error  { m.closed = true; return nil }

func snapshotBytes(t *testing.T, s *Store) []byte {
	t.Helper()
	snap, err := s.Snapshot()
	if err != nil {
		t.Fatalf("snapshot: %v", err)
	}
	defer snap.Release()
	var sink memSink
	if err := snap.Persist(&sink); err != nil {
		t.Fatalf("persist: %v", err)
	}
	if !sink.closed || sink.cancelled {
		t.Fatalf("sink closed %v cancelled %v, want closed only", sink.closed, sink.cancelled)
	}
	return sink.Bytes()
}

// objectBytes is the snapshot without its header, whose index moves even
// when a change set is rejected.
func objectBytes(t *testing.T, s *Store) []byte {
	t.Helper()
	b := snapshotBytes(t, s)
	return b[bytes.IndexByte(b, '\n')+1:]
}

func TestUpdateViewRoundTrip(t *testing.T) {
	s, clk := newStore(t)
	mustUpdate(t, s, func(tx *Tx) error { return tx.PutNode(node("n1", "alpha")) })

	got := getNode(s, "n1")
	if got == nil {
		t.Fatal("node n1 not found")
	}
	if got.Meta.Version != 1 || !got.Meta.CreatedAt.Equal(t0) || !got.Meta.UpdatedAt.Equal(t0) {
		t.Fatalf("got meta %+v, want version 1 created and updated at %v", got.Meta, t0)
	}
	if got.Description.Hostname != "alpha" || got.Spec.Labels["zone"] != "a" {
		t.Fatalf("got %+v, want the node that was put", got)
	}

	// Copies: changing what View handed out changes nothing stored.
	got.Spec.Labels["zone"] = "mutated"
	got.Description.Hostname = "mutated"
	if again := getNode(s, "n1"); again.Spec.Labels["zone"] != "a" || again.Description.Hostname != "alpha" {
		t.Fatalf("store changed through a returned object: %+v", again)
	}

	clk.Advance(time.Minute)
	mustUpdate(t, s, func(tx *Tx) error {
		n := tx.Node("n1")
		n.Spec.Availability = api.AvailabilityDrain
		return tx.PutNode(n)
	})
	got = getNode(s, "n1")
	if got.Meta.Version != 2 || !got.Meta.CreatedAt.Equal(t0) || !got.Meta.UpdatedAt.Equal(t0.Add(time.Minute)) {
		t.Fatalf("got meta %+v, want version 2, created %v, updated %v", got.Meta, t0, t0.Add(time.Minute))
	}
	if got.Spec.Availability != api.AvailabilityDrain {
		t.Fatalf("got availability %q, want drain", got.Spec.Availability)
	}

	mustUpdate(t, s, func(tx *Tx) error {
		return tx.PutCluster(&api.Cluster{ID: "c1", GossipKey: []byte{1, 2, 3}})
	})
	mustUpdate(t, s, func(tx *Tx) error { return tx.DeleteNode("n1") })
	s.View(func(tx ReadTx) {
		if n := tx.Node("n1"); n != nil {
			t.Errorf("got %+v after delete, want nil", n)
		}
		if c := tx.Cluster(); c == nil || c.ID != "c1" || !bytes.Equal(c.GossipKey, []byte{1, 2, 3}) || c.Meta.Version != 3 {
			t.Errorf("got cluster %+v, want c1 at version 3", c)
		}
	})
	if got := s.Index(); got != 4 {
		t.Fatalf("got index %d, want 4", got)
	}
}

func TestTxSeesOwnWrites(t *testing.T) {
	s, _ := newStore(t)
	mustUpdate(t, s, func(tx *Tx) error { return tx.PutNode(node("b", "host-b")) })

	mustUpdate(t, s, func(tx *Tx) error {
		if err := tx.PutNode(node("a", "host-a")); err != nil {
			return err
		}
		if err := tx.PutNode(node("c", "host-c")); err != nil {
			return err
		}
		if err := tx.DeleteNode("b"); err != nil {
			return err
		}
		if tx.Node("b") != nil {
			t.Error("deleted node b still visible in tx")
		}
		// Update a node created in this tx: its version is still 0.
		a := tx.Node("a")
		a.Spec.Labels["x"] = "y"
		if err := tx.PutNode(a); err != nil {
			return err
		}
		var ids []string
		for _, n := range tx.Nodes() {
			ids = append(ids, n.ID)
		}
		if want := []string{"a", "c"}; !reflect.DeepEqual(ids, want) {
			t.Errorf("got ids %v, want %v", ids, want)
		}
		if got := tx.FindNodes("host-a"); len(got) != 1 || got[0].ID != "a" {
			t.Errorf("FindNodes(host-a) in tx: got %v, want [a]", got)
		}
		if got := tx.FindNodes("host-b"); len(got) != 0 {
			t.Errorf("FindNodes(host-b) in tx: got %v, want none", got)
		}
		return nil
	})
	s.View(func(tx ReadTx) {
		if a := tx.Node("a"); a == nil || a.Spec.Labels["x"] != "y" {
			t.Errorf("got %+v, want node a with label x=y", a)
		}
		if tx.Node("b") != nil {
			t.Error("node b not deleted")
		}
	})

	// Create and delete in one tx: nothing to propose.
	before := s.Index()
	mustUpdate(t, s, func(tx *Tx) error {
		if err := tx.PutNode(node("tmp", "")); err != nil {
			return err
		}
		return tx.DeleteNode("tmp")
	})
	if got := s.Index(); got != before {
		t.Fatalf("got index %d, want %d (nothing applied)", got, before)
	}
}

func TestFnErrorWritesNothing(t *testing.T) {
	s, _ := newStore(t)
	p := &raftProposer{s: s}
	s.SetProposer(p)
	boom := errors.New("boom")
	calls := 0
	err := s.Update(context.Background(), func(tx *Tx) error {
		calls++
		if err := tx.PutNode(node("n1", "")); err != nil {
			return err
		}
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("got %v, want %v", err, boom)
	}
	if calls != 1 || len(p.logs) != 0 || getNode(s, "n1") != nil {
		t.Fatalf("got %d calls, %d proposals, node %v; want 1 call, nothing proposed or stored", calls, len(p.logs), getNode(s, "n1"))
	}

	// A change set without writes proposes nothing either.
	mustUpdate(t, s, func(tx *Tx) error { tx.Nodes(); return nil })
	if len(p.logs) != 0 {
		t.Fatalf("got %d proposals for a read-only update, want 0", len(p.logs))
	}
}

func TestWriteChecks(t *testing.T) {
	s, _ := newStore(t)
	mustUpdate(t, s, func(tx *Tx) error {
		if err := tx.PutCluster(&api.Cluster{ID: "c1"}); err != nil {
			return err
		}
		return tx.PutNode(node("n1", ""))
	})
	stale := getNode(s, "n1")
	mustUpdate(t, s, func(tx *Tx) error { return tx.PutNode(tx.Node("n1")) }) // n1 now at a newer version

	tests := []struct {
		name string
		fn   func(tx *Tx) error
		want error
	}{
		{"create existing", func(tx *Tx) error { return tx.PutNode(node("n1", "")) }, ErrExists},
		{"stale version", func(tx *Tx) error { return tx.PutNode(stale) }, ErrConflict},
		{"version of missing object", func(tx *Tx) error {
			n := node("ghost", "")
			n.Meta.Version = 7
			return tx.PutNode(n)
		}, ErrNotFound},
		{"delete missing", func(tx *Tx) error { return tx.DeleteNode("ghost") }, ErrNotFound},
		{"second cluster", func(tx *Tx) error { return tx.PutCluster(&api.Cluster{ID: "c2"}) }, ErrExists},
		{"nil node", func(tx *Tx) error { return tx.PutNode(nil) }, nil},
		{"empty id", func(tx *Tx) error { return tx.PutNode(&api.Node{}) }, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := snapshotBytes(t, s)
			err := s.Update(context.Background(), tt.fn)
			if err == nil || (tt.want != nil && !errors.Is(err, tt.want)) {
				t.Fatalf("got %v, want an error wrapping %v", err, tt.want)
			}
			if !bytes.Equal(snapshotBytes(t, s), before) {
				t.Fatal("state changed after a failed update")
			}
		})
	}

	s.View(func(rtx ReadTx) {
		if err := rtx.(*Tx).PutNode(node("x", "")); !errors.Is(err, ErrReadOnly) {
			t.Errorf("write in View: got %v, want %v", err, ErrReadOnly)
		}
	})
}

// Two writers read n1 at the same version; the second change set to reach
// the FSM is stale and must be rejected whole.
func TestApplyConflict(t *testing.T) {
	s, _ := newStore(t)
	n := node("n1", "alpha")
	n.Meta.CreatedAt, n.Meta.UpdatedAt = t0, t0
	if resp := s.Apply(&raft.Log{Index: 1, Data: encodeOps(t, putOp(t, KindNode, "n1", 0, n))}); resp != nil {
		t.Fatalf("create: got response %v, want nil", resp)
	}

	a, b := *n, *n
	a.Spec.Availability = api.AvailabilityDrain
	b.Spec.Availability = api.AvailabilityPause
	if resp := s.Apply(&raft.Log{Index: 2, Data: encodeOps(t, putOp(t, KindNode, "n1", 1, &a))}); resp != nil {
		t.Fatalf("writer a: got response %v, want nil", resp)
	}
	before := objectBytes(t, s)

	tests := []struct {
		name string
		ops  []op
		want []error
	}{
		{"stale put", []op{putOp(t, KindNode, "n1", 1, &b)}, []error{ErrConflict}},
		{"stale put after a good one", []op{putOp(t, KindNode, "n2", 0, node("n2", "")), putOp(t, KindNode, "n1", 1, &b)}, []error{ErrConflict}},
		{"create over existing", []op{putOp(t, KindNode, "n1", 0, &b)}, []error{ErrConflict, ErrExists}},
		{"stale delete", []op{{Kind: KindNode, Op: opDelete, ID: "n1", Version: 1}}, []error{ErrConflict}},
		{"delete missing", []op{{Kind: KindNode, Op: opDelete, ID: "n9", Version: 1}}, []error{ErrConflict, ErrNotFound}},
		{"update missing", []op{putOp(t, KindNode, "n9", 4, node("n9", ""))}, []error{ErrConflict, ErrNotFound}},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp := s.Apply(&raft.Log{Index: uint64(10 + i), Data: encodeOps(t, tt.ops...)})
			err, ok := resp.(error)
			if !ok {
				t.Fatalf("got response %v, want an error", resp)
			}
			for _, want := range tt.want {
				if !errors.Is(err, want) {
					t.Errorf("got %v, want it to wrap %v", err, want)
				}
			}
			if !bytes.Equal(objectBytes(t, s), before) {
				t.Fatal("state changed after a rejected change set")
			}
		})
	}
	if got := getNode(s, "n1"); got.Spec.Availability != api.AvailabilityDrain || got.Meta.Version != 2 {
		t.Fatalf("got %s at version %d, want drain at version 2", got.Spec.Availability, got.Meta.Version)
	}
}

func TestUpdateRetriesOnConflict(t *testing.T) {
	s, _ := newStore(t)
	p := &raftProposer{s: s}
	s.SetProposer(p)
	mustUpdate(t, s, func(tx *Tx) error { return tx.PutNode(node("n1", "")) })

	// Another manager's write lands between our read and our proposal, once.
	p.before = func(p *raftProposer) {
		p.before = nil
		n := getNode(s, "n1")
		n.Spec.Labels["other"] = "yes"
		p.applyLocked(encodeOps(t, putOp(t, KindNode, "n1", n.Meta.Version, n)))
	}
	calls := 0
	mustUpdate(t, s, func(tx *Tx) error {
		calls++
		n := tx.Node("n1")
		n.Spec.Labels["mine"] = "yes"
		return tx.PutNode(n)
	})
	got := getNode(s, "n1")
	if calls != 2 || got.Spec.Labels["other"] != "yes" || got.Spec.Labels["mine"] != "yes" {
		t.Fatalf("got %d calls, labels %v; want 2 calls and both labels", calls, got.Spec.Labels)
	}
	if got.Meta.Version != 4 { // create, other's write, our rejected try, our retry
		t.Fatalf("got version %d, want 4", got.Meta.Version)
	}
}

type funcProposer func(ctx context.Context, data []byte) (any, error)

func (f funcProposer) Propose(ctx context.Context, data []byte) (any, error) { return f(ctx, data) }

func TestUpdateProposerFailures(t *testing.T) {
	boom := errors.New("boom")
	tests := []struct {
		name      string
		resp      any
		err       error
		want      error
		wantCalls int
	}{
		{"conflict every time", fmt.Errorf("apply: %w", ErrConflict), nil, ErrConflict, MaxRetries + 1},
		{"error response", boom, nil, boom, 1},
		{"propose error", nil, boom, boom, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, _ := newStore(t)
			s.SetProposer(funcProposer(func(context.Context, []byte) (any, error) { return tt.resp, tt.err }))
			calls := 0
			err := s.Update(context.Background(), func(tx *Tx) error {
				calls++
				return tx.PutNode(node("n1", ""))
			})
			if !errors.Is(err, tt.want) {
				t.Fatalf("got %v, want %v", err, tt.want)
			}
			if calls != tt.wantCalls {
				t.Fatalf("got %d calls of fn, want %d", calls, tt.wantCalls)
			}
		})
	}

	s, _ := newStore(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := s.Update(ctx, func(tx *Tx) error { return tx.PutNode(node("n1", "")) }); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled context: got %v, want %v", err, context.Canceled)
	}
}

func TestDeterminism(t *testing.T) {
	a, clk := newStore(t)
	p := &raftProposer{s: a}
	a.SetProposer(p)
	ctx := context.Background()
	for i := range 5 {
		clk.Advance(time.Second)
		mustUpdate(t, a, func(tx *Tx) error {
			n := node("n"+strconv.Itoa(i), "host"+strconv.Itoa(i%2))
			n.Spec.Labels = map[string]string{"k3": "v", "k1": "v", "k2": strconv.Itoa(i)}
			return tx.PutNode(n)
		})
	}
	mustUpdate(t, a, func(tx *Tx) error { return tx.PutCluster(&api.Cluster{ID: "c1", GossipKey: []byte("key")}) })
	mustUpdate(t, a, func(tx *Tx) error {
		for _, n := range tx.Nodes() {
			n.Status.State = api.NodeStateReady
			if err := tx.PutNode(n); err != nil {
				return err
			}
		}
		return tx.DeleteNode("n3")
	})
	// A rejected entry and a malformed one are part of the log too.
	p.mu.Lock()
	p.applyLocked(encodeOps(t, putOp(t, KindNode, "n0", 1, node("n0", "stale"))))
	p.applyLocked([]byte("not json"))
	p.mu.Unlock()
	_ = a.Update(ctx, func(tx *Tx) error { return tx.DeleteNode("n4") })

	b, _ := newStore(t)
	c, _ := newStore(t)
	for _, l := range p.logs {
		rb, rc := b.Apply(l), c.Apply(l)
		if fmt.Sprint(rb) != fmt.Sprint(rc) {
			t.Fatalf("index %d: responses differ: %v and %v", l.Index, rb, rc)
		}
	}
	want := snapshotBytes(t, a)
	for name, s := range map[string]*Store{"b": b, "c": c} {
		if got := snapshotBytes(t, s); !bytes.Equal(got, want) {
			t.Fatalf("store %s differs:\n got %s\nwant %s", name, got, want)
		}
	}
}

func TestSnapshotRestore(t *testing.T) {
	src, clk := newStore(t)
	for i := range 20 {
		clk.Advance(time.Second)
		mustUpdate(t, src, func(tx *Tx) error { return tx.PutNode(node(fmt.Sprintf("n%02d", i), "h")) })
	}
	mustUpdate(t, src, func(tx *Tx) error { return tx.DeleteNode("n07") })
	mustUpdate(t, src, func(tx *Tx) error {
		return tx.PutCluster(&api.Cluster{ID: "c1", CACertPEM: "pem", GossipKey: []byte{9}})
	})
	data := snapshotBytes(t, src)

	dst, _ := newStore(t)
	mustUpdate(t, dst, func(tx *Tx) error { return tx.PutNode(node("only-in-dst", "")) })
	events, cancel := dst.Watch()
	defer cancel()
	if err := dst.Restore(io.NopCloser(bytes.NewReader(data))); err != nil {
		t.Fatalf("restore: %v", err)
	}
	if ev := <-events; !ev.Reset || ev.Index != src.Index() {
		t.Fatalf("got event %+v, want a reset at index %d", ev, src.Index())
	}
	if got := snapshotBytes(t, dst); !bytes.Equal(got, data) {
		t.Fatalf("restored state differs:\n got %s\nwant %s", got, data)
	}
	var srcNodes, dstNodes []*api.Node
	var srcCluster, dstCluster *api.Cluster
	src.View(func(tx ReadTx) { srcNodes, srcCluster = tx.Nodes(), tx.Cluster() })
	dst.View(func(tx ReadTx) { dstNodes, dstCluster = tx.Nodes(), tx.Cluster() })
	if !reflect.DeepEqual(dstNodes, srcNodes) || !reflect.DeepEqual(dstCluster, srcCluster) {
		t.Fatalf("got nodes %v cluster %v, want %v %v", dstNodes, dstCluster, srcNodes, srcCluster)
	}
	if getNode(dst, "only-in-dst") != nil {
		t.Fatal("restore kept an object that is not in the snapshot")
	}

	// Writes go on from the restored index.
	mustUpdate(t, dst, func(tx *Tx) error { return tx.PutNode(node("new", "")) })
	if got := getNode(dst, "new").Meta.Version; got != src.Index()+1 {
		t.Fatalf("got version %d, want %d", got, src.Index()+1)
	}

	// A broken snapshot leaves the state alone.
	before := snapshotBytes(t, dst)
	for _, bad := range []string{"", "garbage", `{"format":99}`, `{"format":1,"index":3}` + "\n" + `{"kind":"nope","object":{}}`, `{"format":1,"index":3}` + "\n" + `{"kind":"node","object":{"id":"x"}}`} {
		if err := dst.Restore(io.NopCloser(bytes.NewReader([]byte(bad)))); !errors.Is(err, ErrMalformed) {
			t.Errorf("restore %q: got %v, want %v", bad, err, ErrMalformed)
		}
	}
	if !bytes.Equal(snapshotBytes(t, dst), before) {
		t.Fatal("a failed restore changed the state")
	}
}

func TestConcurrentUpdates(t *testing.T) {
	const writers, updates = 16, 10
	for _, withProposer := range []bool{false, true} {
		t.Run(fmt.Sprintf("proposer=%v", withProposer), func(t *testing.T) {
			s, _ := newStore(t)
			if withProposer {
				s.SetProposer(&raftProposer{s: s})
			}
			var wg sync.WaitGroup
			errs := make(chan error, writers*updates)
			for w := range writers {
				id := fmt.Sprintf("n%02d", w)
				wg.Go(func() {
					errs <- s.Update(context.Background(), func(tx *Tx) error { return tx.PutNode(node(id, "")) })
					for i := range updates - 1 {
						errs <- s.Update(context.Background(), func(tx *Tx) error {
							n := tx.Node(id)
							n.Spec.Labels["i"] = strconv.Itoa(i + 1)
							return tx.PutNode(n)
						})
						s.View(func(tx ReadTx) { tx.Nodes() })
					}
				})
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				if err != nil {
					t.Fatalf("update: %v", err)
				}
			}
			var got []*api.Node
			s.View(func(tx ReadTx) { got = tx.Nodes() })
			if len(got) != writers {
				t.Fatalf("got %d nodes, want %d", len(got), writers)
			}
			for _, n := range got {
				if n.Spec.Labels["i"] != strconv.Itoa(updates-1) {
					t.Errorf("node %s: got label i=%q, want %d", n.ID, n.Spec.Labels["i"], updates-1)
				}
			}
			if got := s.Index(); got != writers*updates {
				t.Fatalf("got index %d, want %d", got, writers*updates)
			}
		})
	}
}

func TestMalformedEntries(t *testing.T) {
	s, _ := newStore(t)
	mustUpdate(t, s, func(tx *Tx) error { return tx.PutNode(node("n1", "")) })
	before := objectBytes(t, s)

	tests := []struct {
		name string
		data []byte
	}{
		{"empty", nil},
		{"not json", []byte("{{{")},
		{"wrong shape", []byte(`{"ops":"x"}`)},
		{"unknown kind", encodeOps(t, op{Kind: "bogus", Op: opPut, ID: "x", Object: []byte(`{}`)})},
		{"unknown op", encodeOps(t, op{Kind: KindNode, Op: "frob", ID: "n1", Version: 1})},
		{"empty id", encodeOps(t, putOp(t, KindNode, "", 0, &api.Node{}))},
		{"id mismatch", encodeOps(t, putOp(t, KindNode, "n2", 0, node("other", "")))},
		{"bad object", []byte(`{"ops":[{"kind":"node","op":"put","id":"n2","object":{"spec":{"role":7}}}]}`)},
		{"missing object", []byte(`{"ops":[{"kind":"node","op":"put","id":"n2"}]}`)},
		{"written twice", encodeOps(t, putOp(t, KindNode, "n2", 0, node("n2", "")), putOp(t, KindNode, "n2", 0, node("n2", "")))},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp := s.Apply(&raft.Log{Index: uint64(100 + i), Data: tt.data})
			if err, ok := resp.(error); !ok || !errors.Is(err, ErrMalformed) {
				t.Fatalf("got response %v, want an error wrapping %v", resp, ErrMalformed)
			}
			if !bytes.Equal(objectBytes(t, s), before) {
				t.Fatal("state changed")
			}
		})
	}
	if err, ok := s.Apply(nil).(error); !ok || !errors.Is(err, ErrMalformed) {
		t.Fatalf("nil log: got %v, want %v", err, ErrMalformed)
	}
	mustUpdate(t, s, func(tx *Tx) error { return tx.PutNode(node("after", "")) })
}

func TestFindNodes(t *testing.T) {
	s, _ := newStore(t)
	mustUpdate(t, s, func(tx *Tx) error {
		for _, n := range []*api.Node{
			node("abc123", "alpha"),
			node("abd456", "beta"),
			node("xyz789", "twin"),
			node("xyw000", "twin"),
			node("q1", "xyz"),
			node("ab", "gamma"),
		} {
			if err := tx.PutNode(n); err != nil {
				return err
			}
		}
		return nil
	})
	tests := []struct {
		ref  string
		want []string
	}{
		{"abc123", []string{"abc123"}},
		{"ab", []string{"ab"}},                    // exact ID beats prefixes
		{"abc", []string{"abc123"}},               // unique prefix
		{"a", []string{"ab", "abc123", "abd456"}}, // ambiguous prefix
		{"beta", []string{"abd456"}},              // hostname
		{"twin", []string{"xyw000", "xyz789"}},    // ambiguous hostname
		{"xyz", []string{"q1"}},                   // hostname beats an ID prefix, as in docker
		{"xy", []string{"xyw000", "xyz789"}},      // ambiguous prefix
		{"nope", nil},
		{"", nil},
	}
	for _, tt := range tests {
		t.Run(tt.ref, func(t *testing.T) {
			var ids []string
			s.View(func(tx ReadTx) {
				for _, n := range tx.FindNodes(tt.ref) {
					ids = append(ids, n.ID)
				}
			})
			if !reflect.DeepEqual(ids, tt.want) {
				t.Fatalf("got %v, want %v", ids, tt.want)
			}
		})
	}
}

func TestWatch(t *testing.T) {
	s, _ := newStore(t)
	var initial int
	events, cancel := s.ViewAndWatch(func(tx ReadTx) { initial = len(tx.Nodes()) })
	if initial != 0 {
		t.Fatalf("got %d nodes, want 0", initial)
	}
	mustUpdate(t, s, func(tx *Tx) error {
		if err := tx.PutNode(node("b", "")); err != nil {
			return err
		}
		return tx.PutNode(node("a", ""))
	})
	mustUpdate(t, s, func(tx *Tx) error {
		if err := tx.PutNode(tx.Node("a")); err != nil {
			return err
		}
		return tx.DeleteNode("b")
	})
	want := []Event{
		{Index: 1, Changes: []Change{{KindNode, OpCreate, "a", 1}, {KindNode, OpCreate, "b", 1}}},
		{Index: 2, Changes: []Change{{KindNode, OpUpdate, "a", 2}, {KindNode, OpDelete, "b", 2}}},
	}
	for _, w := range want {
		if got := <-events; !reflect.DeepEqual(got, w) {
			t.Fatalf("got %+v, want %+v", got, w)
		}
	}
	cancel()
	cancel() // idempotent
	if _, ok := <-events; ok {
		t.Fatal("channel open after cancel")
	}
}

func TestWatchDropsForSlowSubscriber(t *testing.T) {
	s, _ := newStore(t)
	s.watchBuffer = 2
	slow, cancelSlow := s.Watch()
	defer cancelSlow()
	fast, cancelFast := s.Watch()
	defer cancelFast()

	for i := range 5 {
		mustUpdate(t, s, func(tx *Tx) error { return tx.PutNode(node("n"+strconv.Itoa(i), "")) })
		if ev := <-fast; ev.Index != uint64(i+1) || ev.Dropped != 0 {
			t.Fatalf("fast subscriber: got %+v, want index %d, nothing dropped", ev, i+1)
		}
	}
	if got := s.DroppedEvents(); got != 3 {
		t.Fatalf("got %d dropped, want 3", got)
	}
	for _, want := range []uint64{1, 2} {
		if ev := <-slow; ev.Index != want || ev.Dropped != 0 {
			t.Fatalf("slow subscriber: got %+v, want index %d", ev, want)
		}
	}
	mustUpdate(t, s, func(tx *Tx) error { return tx.DeleteNode("n0") })
	if ev := <-slow; ev.Index != 6 || ev.Dropped != 3 {
		t.Fatalf("slow subscriber: got %+v, want index 6 with 3 dropped", ev)
	}
}

// TestNoWriteSkew: fn reads n1 and writes only n2; a write to n1 landing
// between the read and the proposal makes the FSM refuse the change set
// (read index before the last write), and fn runs again on the new n1.
func TestNoWriteSkew(t *testing.T) {
	s, _ := newStore(t)
	p := &raftProposer{s: s}
	s.SetProposer(p)
	mustUpdate(t, s, func(tx *Tx) error {
		if err := tx.PutNode(node("n1", "")); err != nil {
			return err
		}
		return tx.PutNode(node("n2", ""))
	})
	p.before = func(p *raftProposer) {
		p.before = nil
		n := getNode(s, "n1")
		n.Spec.Availability = api.AvailabilityDrain
		p.applyLocked(encodeOps(t, putOp(t, KindNode, "n1", n.Meta.Version, n)))
	}
	var seen []api.Availability
	mustUpdate(t, s, func(tx *Tx) error {
		a := tx.Node("n1").Spec.Availability
		seen = append(seen, a)
		n2 := tx.Node("n2")
		n2.Spec.Labels["n1"] = string(a)
		return tx.PutNode(n2)
	})
	if !slices.Equal(seen, []api.Availability{api.AvailabilityActive, api.AvailabilityDrain}) {
		t.Fatalf("fn saw n1 as %v, want active then drain", seen)
	}
	if got := getNode(s, "n2").Spec.Labels["n1"]; got != string(api.AvailabilityDrain) {
		t.Fatalf("n2 was written from n1 %q, want drain", got)
	}
}

// TestUpdatesSerialize: concurrent updates of different objects through a
// proposer that applies asynchronously, as raft does, all succeed at once.
func TestUpdatesSerialize(t *testing.T) {
	s, _ := newStore(t)
	p := &raftProposer{s: s}
	s.SetProposer(funcProposer(func(_ context.Context, data []byte) (any, error) {
		done := make(chan any)
		go func() { r, _ := p.Propose(context.Background(), data); done <- r }()
		return <-done, nil
	}))
	const writers, rounds = 8, 25
	mustUpdate(t, s, func(tx *Tx) error {
		for i := range writers {
			if err := tx.PutNode(node(fmt.Sprintf("n%d", i), "")); err != nil {
				return err
			}
		}
		return nil
	})
	errs := make(chan error, writers*rounds)
	var wg sync.WaitGroup
	for i := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for r := range rounds {
				errs <- s.Update(context.Background(), func(tx *Tx) error {
					// Every writer also reads all nodes, as a controller does.
					_ = tx.Nodes()
					n := tx.Node(fmt.Sprintf("n%d", i))
					n.Spec.Labels[fmt.Sprintf("r%d", r)] = "x"
					return tx.PutNode(n)
				})
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("update: %v", err)
		}
	}
	for i := range writers {
		if n := getNode(s, fmt.Sprintf("n%d", i)); len(n.Spec.Labels) != rounds+1 {
			t.Fatalf("node n%d has %d labels, want %d", i, len(n.Spec.Labels), rounds+1)
		}
	}
}

func TestPendingTasks(t *testing.T) {
	s, _ := newStore(t)
	task := func(id string, state, desired api.TaskState) *api.Task {
		return &api.Task{ID: id, ServiceID: "svc", DesiredState: desired, Status: api.TaskStatus{State: state}}
	}
	ids := func(ts []*api.Task) []string {
		var out []string
		for _, t := range ts {
			out = append(out, t.ID)
		}
		return out
	}
	mustUpdate(t, s, func(tx *Tx) error {
		for _, tk := range []*api.Task{
			task("p1", api.TaskPending, api.TaskRunning),
			task("p2", api.TaskPending, api.TaskRunning),
			task("r1", api.TaskRunning, api.TaskRunning),
			task("s1", api.TaskPending, api.TaskShutdown),
		} {
			if err := tx.PutTask(tk); err != nil {
				return err
			}
		}
		return nil
	})
	s.View(func(tx ReadTx) {
		if got, want := ids(tx.PendingTasks()), []string{"p1", "p2"}; !reflect.DeepEqual(got, want) {
			t.Errorf("pending %v, want %v", got, want)
		}
	})
	mustUpdate(t, s, func(tx *Tx) error {
		p1 := tx.Task("p1")
		p1.Status.State = api.TaskAssigned
		if err := tx.PutTask(p1); err != nil {
			return err
		}
		if err := tx.PutTask(task("p3", api.TaskPending, api.TaskRunning)); err != nil {
			return err
		}
		if err := tx.DeleteTask("p2"); err != nil {
			return err
		}
		if got, want := ids(tx.PendingTasks()), []string{"p3"}; !reflect.DeepEqual(got, want) {
			t.Errorf("pending in the writing tx %v, want %v", got, want)
		}
		return nil
	})
	s.View(func(tx ReadTx) {
		if got, want := ids(tx.PendingTasks()), []string{"p3"}; !reflect.DeepEqual(got, want) {
			t.Errorf("pending after commit %v, want %v", got, want)
		}
	})
}
