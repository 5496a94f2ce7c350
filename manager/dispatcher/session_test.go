package dispatcher_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/shoal-dev/shoal/api"
	"github.com/shoal-dev/shoal/manager/dispatcher"
	"github.com/shoal-dev/shoal/store"
)

// addNodes puts n workers w0000... in state into the store at once.
func (f *fixture) addNodes(n int, state api.NodeState) {
	f.t.Helper()
	if err := f.store.Update(context.Background(), func(tx *store.Tx) error {
		for i := range n {
			if err := tx.PutNode(&api.Node{
				ID:     fmt.Sprintf("w%04d", i),
				Spec:   api.NodeSpec{Role: api.RoleWorker, Availability: api.AvailabilityActive},
				Status: api.NodeStatus{State: state, Addr: "10.0.0.1"},
			}); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		f.t.Fatalf("put nodes: %v", err)
	}
}

// The period told to nodes grows with their number so that the leader
// takes about dispatcher.BeatsPerSecond beats; down nodes do not count.
func TestPeriodScalesWithNodes(t *testing.T) {
	tests := []struct {
		ready, down int
		want        time.Duration
	}{
		{0, 0, period},
		{dispatcher.BeatsPerSecond - 1, 0, period}, // and n1 makes BeatsPerSecond
		{dispatcher.BeatsPerSecond, 0, 2 * period},
		{5*dispatcher.BeatsPerSecond - 1, 0, 5 * period},
		{100, 900, period},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%d ready %d down", tt.ready, tt.down), func(t *testing.T) {
			f := newFixture(t)
			f.run()
			f.addNodes(tt.ready, api.NodeStateReady)
			if tt.down > 0 {
				if err := f.store.Update(context.Background(), func(tx *store.Tx) error {
					for i := range tt.down {
						if err := tx.PutNode(&api.Node{ID: fmt.Sprintf("d%04d", i), Status: api.NodeStatus{State: api.NodeStateDown}}); err != nil {
							return err
						}
					}
					return nil
				}); err != nil {
					t.Fatal(err)
				}
			}
			f.addNode("n1", api.NodeStateReady)
			f.clk.step(t, period/4)
			if got := f.beat("n1", hb("a")).Period; got != tt.want {
				t.Errorf("got period %v, want %v", got, tt.want)
			}
		})
	}
}

// A node is judged by the period it was told, and gossip's verdict by the
// cluster's period: a longer period must not slow down the replacement of
// a dead node.
func TestScaledPeriodJudging(t *testing.T) {
	f := newFixture(t)
	f.run()
	f.addNodes(5*dispatcher.BeatsPerSecond-2, api.NodeStateReady)
	f.addNode("slow", api.NodeStateReady)
	f.addNode("dead", api.NodeStateReady)
	f.clk.step(t, period/4)
	told := f.beat("slow", hb("s")).Period
	if told != 5*period {
		t.Fatalf("got period %v, want %v", told, 5*period)
	}
	f.beat("dead", hb("d"))
	f.gossip.kill("dead")

	f.clk.step(t, 2*period) // 2 periods after the beats
	if got := f.state("dead"); got != api.NodeStateReady {
		t.Fatalf("dead after 2 periods: got %q, want ready (a restarting node has 2 periods)", got)
	}
	f.clk.step(t, period/4)
	if got := f.state("dead"); got != api.NodeStateDown {
		t.Fatalf("dead gossip and no beat for more than 2 periods: got %q, want down", got)
	}

	f.clk.step(t, 3*told-2*period-period/2) // just before 3 told periods
	if got := f.state("slow"); got != api.NodeStateReady {
		t.Fatalf("slow after %v: got %q, want ready: it was told %v", 3*told-period/4, got, told)
	}
	f.clk.step(t, period/2)
	if got := f.state("slow"); got != api.NodeStateUnknown {
		t.Fatalf("slow after more than 3 told periods: got %q, want unknown", got)
	}
}

// openPoll starts a long poll for id that waits (the node already holds
// the complete set) until its context is cancelled.
func (f *fixture) openPoll(id string) (cancel func()) {
	f.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	var got api.Assignments
	for {
		var err error
		got, err = f.d.Assignments(context.Background(), id, 0, "")
		if err == nil {
			break
		}
		if !errors.Is(err, dispatcher.ErrNotReady) || time.Now().After(deadline) {
			f.t.Fatalf("Assignments %s: %v", id, err)
		}
	}
	ctx, cancelCtx := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := f.d.Assignments(ctx, id, got.Index, got.NetworkSum)
		done <- err
	}()
	return func() {
		cancelCtx()
		select {
		case err := <-done:
			if !errors.Is(err, context.Canceled) {
				f.t.Errorf("poll of %s ended with %v, want it cancelled", id, err)
			}
		case <-time.After(10 * time.Second):
			f.t.Fatalf("poll of %s did not end", id)
		}
	}
}

// A node gossip does not know (a hollow node) whose session ended (its
// long poll gone with the node) and that does not come back within 2
// periods is down; a gossip member is left to gossip, and a node that
// polls or beats again stays.
func TestSessionEnded(t *testing.T) {
	f := newFixture(t)
	f.run()
	for _, id := range []string{"gone", "member", "repolls", "rebeats"} {
		f.addNode(id, api.NodeStateReady)
		if id != "member" {
			f.gossip.stranger(id)
		}
		f.beat(id, hb(id))
	}
	var cancels []func()
	for _, id := range []string{"gone", "member", "repolls", "rebeats"} {
		cancels = append(cancels, f.openPoll(id))
	}
	for _, c := range cancels {
		c()
	}
	// A poll answered normally is no sign of anything.
	f.addNode("answered", api.NodeStateReady)
	f.gossip.stranger("answered")
	f.beat("answered", hb("a"))
	if _, err := f.d.Assignments(context.Background(), "answered", 0, ""); err != nil {
		t.Fatal(err)
	}
	stillPolling := f.openPoll("repolls")
	defer stillPolling()

	f.clk.step(t, period)
	f.beat("rebeats", hb("rebeats"))
	f.clk.step(t, period)
	for _, id := range []string{"gone", "member", "repolls", "rebeats", "answered"} {
		if got := f.state(id); got != api.NodeStateReady {
			t.Errorf("%s after 2 periods: got %q, want ready", id, got)
		}
	}
	f.clk.step(t, period/4)
	want := map[string]api.NodeState{"gone": api.NodeStateDown, "member": api.NodeStateReady, "repolls": api.NodeStateReady,
		"rebeats": api.NodeStateReady, "answered": api.NodeStateReady}
	for id, w := range want {
		if got := f.state(id); got != w {
			t.Errorf("%s after more than 2 periods: got %q, want %q", id, got, w)
		}
	}
	if msg := f.node("gone").Status.Message; !strings.Contains(msg, "session ended") {
		t.Errorf("got message %q, want it to say the session ended", msg)
	}
}

// An empty beat (nil) says nothing changed: the stored description stands
// and nothing is written, but it counts as a beat and brings a node back.
func TestEmptyBeat(t *testing.T) {
	f := newFixture(t)
	f.run()
	f.addNode("n1", api.NodeStateUnknown)
	full := hb("alpha")
	f.beat("n1", full)
	empty := func(id string) api.HeartbeatResponse {
		t.Helper()
		resp, err := f.d.Heartbeat(context.Background(), id, full.Addr, nil)
		if err != nil {
			t.Fatalf("empty beat of %s: %v", id, err)
		}
		return resp
	}

	before := f.store.Index()
	if resp := empty("n1"); resp.Describe || resp.Period != period || resp.Role != api.RoleWorker {
		t.Errorf("got %+v, want period %v, role worker, no Describe", resp, period)
	}
	if got := f.store.Index(); got != before {
		t.Errorf("an empty beat of a ready node wrote (index %d -> %d)", before, got)
	}

	f.clk.step(t, timeout+period/4)
	if got := f.state("n1"); got != api.NodeStateUnknown {
		t.Fatalf("after the timeout: got %q, want unknown", got)
	}
	empty("n1")
	n := f.node("n1")
	if n.Status.State != api.NodeStateReady || n.Description != full.Description || n.Endpoints != full.Endpoints {
		t.Errorf("after an empty beat: got %+v %+v %+v, want ready with the description of the last full beat", n.Status, n.Description, n.Endpoints)
	}

	// A node never described is asked for its description and not marked ready.
	f.addNode("new", api.NodeStateUnknown)
	if resp := empty("new"); !resp.Describe {
		t.Errorf("got %+v for a node never described, want Describe", resp)
	}
	if got := f.state("new"); got != api.NodeStateUnknown {
		t.Errorf("got %q, want unknown until a full beat", got)
	}
}
