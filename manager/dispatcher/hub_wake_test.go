package dispatcher

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/shoal-dev/shoal/api"
	"github.com/shoal-dev/shoal/clock"
	"github.com/shoal-dev/shoal/store"
)

// A change wakes the long polls of the nodes it concerns, and every poll
// only when the network view (what every node may see) changed.
func TestHubWakesOnlyConcernedNodes(t *testing.T) {
	st := store.New(clock.Real{}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	update := func(fn func(tx *store.Tx) error) {
		t.Helper()
		if err := st.Update(ctx, fn); err != nil {
			t.Fatal(err)
		}
	}
	update(func(tx *store.Tx) error {
		for _, id := range []string{"a", "b", "c"} {
			if err := tx.PutNode(&api.Node{ID: id, Status: api.NodeStatus{State: api.NodeStateReady, Addr: "10.0.0.1"}}); err != nil {
				return err
			}
		}
		if err := tx.PutService(&api.Service{ID: "svc", Spec: api.ServiceSpec{Name: "web", Replicas: 1}}); err != nil {
			return err
		}
		return tx.PutTask(&api.Task{ID: "ta", ServiceID: "svc", NodeID: "a", DesiredState: api.TaskRunning,
			Status: api.TaskStatus{State: api.TaskAssigned}})
	})
	h := newHub()
	go h.run(ctx, st)
	caughtUp := func() {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for {
			h.mu.Lock()
			ok := h.tasks != nil && h.index >= st.Index()
			h.mu.Unlock()
			if ok {
				return
			}
			if time.Now().After(deadline) {
				t.Fatal("the hub did not catch up with the store")
			}
			time.Sleep(time.Millisecond)
		}
	}
	closed := func(ch <-chan struct{}) bool {
		select {
		case <-ch:
			return true
		default:
			return false
		}
	}
	type chans struct{ moved, all, mine <-chan struct{} }
	waits := func() map[string]chans {
		h.mu.Lock()
		defer h.mu.Unlock()
		out := map[string]chans{}
		for _, id := range []string{"a", "b", "c"} {
			m, a, n := h.waitFor(id)
			out[id] = chans{m, a, n}
		}
		return out
	}
	check := func(step string, w map[string]chans, wantAll bool, woken ...string) {
		t.Helper()
		for id, c := range w {
			want := wantAll
			for _, x := range woken {
				want = want || x == id
			}
			if got := closed(c.all) || closed(c.mine); got != want {
				t.Errorf("%s: poll of %s woken %v, want %v", step, id, got, want)
			}
			if !closed(c.moved) {
				t.Errorf("%s: moved not closed for %s: a poll still catching up must see every move", step, id)
			}
		}
	}
	caughtUp()

	w := waits()
	update(func(tx *store.Tx) error { // a task off the networks starts: its node only
		task := tx.Task("ta")
		task.Status.State = api.TaskRunning
		return tx.PutTask(task)
	})
	caughtUp()
	check("task of a changed", w, false, "a")

	w = waits()
	update(func(tx *store.Tx) error { // a node beats its way back to ready: that node only
		n := tx.Node("b")
		n.Status.State = api.NodeStateUnknown
		return tx.PutNode(n)
	})
	caughtUp()
	check("node b changed", w, false, "b")

	w = waits()
	update(func(tx *store.Tx) error { // a task moves from a to c: both
		task := tx.Task("ta")
		task.NodeID = "c"
		return tx.PutTask(task)
	})
	caughtUp()
	check("task moved from a to c", w, false, "a", "c")

	w = waits()
	update(func(tx *store.Tx) error { // a network: every node may see it
		if err := tx.PutNetwork(&api.Network{ID: "net1", Spec: api.NetworkSpec{Name: "n1", Subnet: "10.1.0.0/24"}, VNI: 4097}); err != nil {
			return err
		}
		s := tx.Service("svc")
		s.Spec.Networks = []string{"net1"}
		return tx.PutService(s)
	})
	caughtUp()
	check("network and service changed", w, true)
}
