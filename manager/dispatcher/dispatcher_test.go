package dispatcher_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/shoal-dev/shoal/api"
	"github.com/shoal-dev/shoal/clock"
	"github.com/shoal-dev/shoal/manager/dispatcher"
	"github.com/shoal-dev/shoal/store"
)

const (
	period  = time.Second
	timeout = 3 * period // missed beats that make a node unknown
	grace   = 5 * time.Second
)

var t0 = time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)

// fakeGossip sees every node alive but those the test marked dead or
// strangers (not members: hollow nodes).
type fakeGossip struct {
	mu        sync.Mutex
	dead      map[string]bool
	strangers map[string]bool
}

func (g *fakeGossip) Alive(id string) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return !g.dead[id] && !g.strangers[id]
}

func (g *fakeGossip) Dead(id string) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.dead[id]
}

func (g *fakeGossip) stranger(id string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.strangers == nil {
		g.strangers = map[string]bool{}
	}
	g.strangers[id] = true
}

func (g *fakeGossip) kill(id string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.dead == nil {
		g.dead = map[string]bool{}
	}
	g.dead[id] = true
}

// steppedClock is a fake clock whose ticker the test drives by hand: each
// tick is handed to Run directly, so the test knows when a check ran.
type steppedClock struct {
	*clock.Fake
	ticks   chan time.Time
	created chan time.Duration
}

func newSteppedClock() *steppedClock {
	return &steppedClock{Fake: clock.NewFake(t0), ticks: make(chan time.Time), created: make(chan time.Duration, 1)}
}

func (c *steppedClock) NewTicker(d time.Duration) (<-chan time.Time, func()) {
	c.created <- d
	return c.ticks, func() {}
}

// step moves the clock by d and lets Run check once at the new time. It
// returns once that check has finished: Run takes ticks one at a time, so
// the second, identical tick is taken only after the first check returned
// (and a second check at the same time changes nothing).
func (c *steppedClock) step(t *testing.T, d time.Duration) {
	t.Helper()
	c.Advance(d)
	for range 2 {
		select {
		case c.ticks <- c.Now():
		case <-time.After(10 * time.Second): // guards against a hang
			t.Fatalf("Run took no tick")
		}
	}
}

type fixture struct {
	t      *testing.T
	clk    *steppedClock
	store  *store.Store
	gossip *fakeGossip
	reg    *prometheus.Registry
	d      *dispatcher.Dispatcher
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	clk := newSteppedClock()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	f := &fixture{t: t, clk: clk, store: store.New(clk, log), gossip: &fakeGossip{}, reg: prometheus.NewRegistry()}
	f.d = dispatcher.New(dispatcher.Config{
		Store: f.store, Gossip: f.gossip, Clock: clk, Logger: log,
		Period: period, Grace: grace, Registry: f.reg,
	})
	return f
}

// run starts Run and returns once it ticks; it stops with the test.
func (f *fixture) run() {
	f.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); f.d.Run(ctx) }()
	f.t.Cleanup(func() { cancel(); <-done })
	select {
	case d := <-f.clk.created:
		if d <= 0 || d > period {
			f.t.Errorf("got ticker period %v, want a fraction of %v", d, period)
		}
	case <-time.After(10 * time.Second):
		f.t.Fatalf("Run made no ticker")
	}
}

func (f *fixture) addNode(id string, state api.NodeState) {
	f.t.Helper()
	n := &api.Node{
		ID:     id,
		Spec:   api.NodeSpec{Role: api.RoleWorker, Availability: api.AvailabilityDrain},
		Status: api.NodeStatus{State: state, Addr: "10.0.0.1"},
	}
	if err := f.store.Update(context.Background(), func(tx *store.Tx) error { return tx.PutNode(n) }); err != nil {
		f.t.Fatalf("put node: %v", err)
	}
}

func (f *fixture) node(id string) *api.Node {
	var n *api.Node
	f.store.View(func(tx store.ReadTx) { n = tx.Node(id) })
	return n
}

func (f *fixture) state(id string) api.NodeState { return f.node(id).Status.State }

func (f *fixture) beat(id string, hb api.Heartbeat) api.HeartbeatResponse {
	f.t.Helper()
	resp, err := f.d.Heartbeat(context.Background(), id, hb.Addr, &hb) // the call comes from the address it names
	if err != nil {
		f.t.Fatalf("Heartbeat %s: %v", id, err)
	}
	return resp
}

// counter returns the value of a counter in the registry, 0 if absent.
func (f *fixture) counter(name, state string) float64 {
	f.t.Helper()
	mfs, err := f.reg.Gather()
	if err != nil {
		f.t.Fatalf("gather: %v", err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			match := state == ""
			for _, l := range m.GetLabel() {
				if l.GetName() == "state" && l.GetValue() == state {
					match = true
				}
			}
			if match {
				return m.GetCounter().GetValue()
			}
		}
	}
	return 0
}

func ptr[T any](v T) *T { return &v }

func hb(hostname string) api.Heartbeat {
	return api.Heartbeat{
		Addr:        "10.0.0.9",
		Endpoints:   api.Endpoints{Gossip: "10.0.0.9:7946"},
		Description: api.NodeDescription{Hostname: hostname, OS: "linux", Arch: "amd64", CPUs: 2, MemoryBytes: 1 << 30},
	}
}

func TestHeartbeatOnlyWhileRunning(t *testing.T) {
	f := newFixture(t)
	f.addNode("n1", api.NodeStateUnknown)
	if _, err := f.d.Heartbeat(context.Background(), "n1", "", ptr(hb("a"))); !errors.Is(err, dispatcher.ErrNotReady) {
		t.Fatalf("got %v before Run, want ErrNotReady", err)
	}
	if f.state("n1") != api.NodeStateUnknown {
		t.Errorf("got state %q, want unknown: a heartbeat refused must not write", f.state("n1"))
	}

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); f.d.Run(ctx) }()
	<-f.clk.created
	f.beat("n1", hb("a"))
	cancel()
	<-done
	if _, err := f.d.Heartbeat(context.Background(), "n1", "", ptr(hb("a"))); !errors.Is(err, dispatcher.ErrNotReady) {
		t.Errorf("got %v after Run returned, want ErrNotReady", err)
	}
}

func TestHeartbeatMarksReady(t *testing.T) {
	for _, from := range []api.NodeState{api.NodeStateUnknown, api.NodeStateDown} {
		t.Run(string(from), func(t *testing.T) {
			f := newFixture(t)
			f.run()
			f.addNode("n1", from)
			beat := hb("alpha")
			resp := f.beat("n1", beat)
			if resp.Role != api.RoleWorker || resp.Availability != api.AvailabilityDrain || resp.Period != period || resp.Removed {
				t.Errorf("got %+v, want role worker, drain, period %v, not removed", resp, period)
			}
			n := f.node("n1")
			want := api.NodeStatus{State: api.NodeStateReady, Addr: beat.Addr}
			if n.Status != want || n.Description != beat.Description || n.Endpoints != beat.Endpoints {
				t.Errorf("got status %+v description %+v endpoints %+v, want %+v %+v %+v",
					n.Status, n.Description, n.Endpoints, want, beat.Description, beat.Endpoints)
			}
			if got := f.counter("shoal_dispatcher_node_state_changes_total", "ready"); got != 1 {
				t.Errorf("got %v ready changes, want 1", got)
			}
		})
	}
}

func TestHeartbeatFromRemovedNode(t *testing.T) {
	f := newFixture(t)
	f.run()
	before := f.store.Index()
	resp := f.beat("gone", hb("a"))
	if !resp.Removed {
		t.Errorf("got %+v, want Removed", resp)
	}
	if got := f.store.Index(); got != before {
		t.Errorf("got store index %d, want %d: nothing to write for a removed node", got, before)
	}
}

func TestHeartbeatWritesOnlyChanges(t *testing.T) {
	f := newFixture(t)
	f.run()
	f.addNode("n1", api.NodeStateUnknown)
	beat := hb("alpha")
	f.beat("n1", beat)

	changed := func(change func(*api.Heartbeat)) api.Heartbeat {
		b := beat
		change(&b)
		return b
	}
	tests := []struct {
		name      string
		hb        api.Heartbeat
		wantWrite bool
	}{
		{"same", beat, false},
		{"same again", beat, false},
		{"new address", changed(func(b *api.Heartbeat) { b.Addr, b.Endpoints.Gossip = "10.0.0.10", "10.0.0.10:7946" }), true},
		{"new endpoints", changed(func(b *api.Heartbeat) {
			b.Addr, b.Endpoints.Gossip = "10.0.0.10", "10.0.0.10:7946"
			b.Endpoints.Metrics = "10.0.0.10:9100"
		}), true},
		{"new description", changed(func(b *api.Heartbeat) {
			b.Addr, b.Endpoints.Gossip = "10.0.0.10", "10.0.0.10:7946"
			b.Endpoints.Metrics = "10.0.0.10:9100"
			b.Description.Engine = api.Engine{Name: "containerd", Version: "1.7", Available: true}
		}), true},
		{"unchanged after the change", changed(func(b *api.Heartbeat) {
			b.Addr, b.Endpoints.Gossip = "10.0.0.10", "10.0.0.10:7946"
			b.Endpoints.Metrics = "10.0.0.10:9100"
			b.Description.Engine = api.Engine{Name: "containerd", Version: "1.7", Available: true}
		}), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := f.store.Index()
			f.clk.step(t, period) // heartbeats come a period apart; the node stays ready
			if got := f.store.Index(); got != before {
				t.Fatalf("got store index %d after a check, want %d", got, before)
			}
			f.beat("n1", tt.hb)
			after := f.store.Index()
			if wrote := after != before; wrote != tt.wantWrite {
				t.Errorf("got write %v (index %d -> %d), want %v", wrote, before, after, tt.wantWrite)
			}
			if n := f.node("n1"); n.Status.Addr != tt.hb.Addr || n.Endpoints != tt.hb.Endpoints || n.Description != tt.hb.Description {
				t.Errorf("got stored %+v %+v %+v, want the heartbeat's %+v", n.Status, n.Endpoints, n.Description, tt.hb)
			}
		})
	}
}

func TestHeartbeatCannotChangeIdentity(t *testing.T) {
	f := newFixture(t)
	f.run()
	f.addNode("n1", api.NodeStateUnknown)
	if err := f.store.Update(context.Background(), func(tx *store.Tx) error {
		n := tx.Node("n1")
		n.Description.Hostname = "joined-as"
		return tx.PutNode(n)
	}); err != nil {
		t.Fatal(err)
	}
	claim := hb("someone-else")
	claim.Addr = "10.9.9.9"
	claim.Endpoints = api.Endpoints{API: "10.9.9.9:2377", Gossip: "10.9.9.9:7946", Metrics: "10.0.0.5:9100"}
	if _, err := f.d.Heartbeat(context.Background(), "n1", "10.0.0.5", &claim); err != nil {
		t.Fatal(err)
	}
	n := f.node("n1")
	if n.Status.Addr != "10.0.0.5" || n.Description.Hostname != "joined-as" {
		t.Errorf("got address %q hostname %q, want the connection's 10.0.0.5 and the join's joined-as", n.Status.Addr, n.Description.Hostname)
	}
	want := api.Endpoints{API: "10.0.0.5:2377", Gossip: "10.0.0.5:7946", Metrics: "10.0.0.5:9100"}
	if n.Endpoints != want {
		t.Errorf("got endpoints %+v, want %+v", n.Endpoints, want)
	}
	if n.Description.CPUs != claim.Description.CPUs {
		t.Errorf("got %d CPUs, want the reported %d", n.Description.CPUs, claim.Description.CPUs)
	}
}

func TestNodeDownAfterTimeout(t *testing.T) {
	f := newFixture(t)
	f.run()
	f.addNode("beating", api.NodeStateUnknown)
	f.addNode("silent", api.NodeStateReady) // ready under the last leader, never heard from since Run
	f.addNode("late", api.NodeStateUnknown)
	f.addNode("down", api.NodeStateDown)
	downVersion := f.node("down").Meta.Version

	f.beat("beating", hb("b"))
	f.beat("late", hb("l"))
	start := f.clk.Now()
	step := period / 4
	for f.clk.Now().Sub(start) < 2*(timeout+grace) {
		f.clk.step(t, step)
		quiet := f.clk.Now().Sub(start)
		// "beating" keeps beating; "late" beats once, half a timeout in.
		f.beat("beating", hb("b"))
		if quiet == timeout/2 {
			f.beat("late", hb("l"))
		}
		if got, want := f.state("silent"), wantState(quiet, timeout); got != want {
			t.Fatalf("silent after %v: got %q, want %q", quiet, got, want)
		}
		if got, want := f.state("late"), wantState(quiet-timeout/2, timeout); got != want {
			t.Fatalf("late after %v: got %q, want %q", quiet, got, want)
		}
		if got := f.state("beating"); got != api.NodeStateReady {
			t.Fatalf("beating after %v: got %q, want ready", quiet, got)
		}
	}
	if msg := f.node("silent").Status.Message; !strings.Contains(msg, "no heartbeat") {
		t.Errorf("got message %q, want it to say no heartbeat", msg)
	}
	if got := f.node("down").Meta.Version; got != downVersion {
		t.Errorf("got version %d for a node already down, want %d: no rewrite", got, downVersion)
	}
	if got := f.counter("shoal_dispatcher_node_state_changes_total", "down"); got != 2 {
		t.Errorf("got %v down changes, want 2", got)
	}

	// A heartbeat brings a down node back.
	f.beat("silent", hb("s"))
	if got := f.node("silent").Status; got.State != api.NodeStateReady || got.Message != "" {
		t.Errorf("got status %+v after a heartbeat, want ready without a message", got)
	}
}

// wantState is the state of a node that gossip still reaches and that has
// been quiet for quiet: unknown after the timeout, down after the grace.
func wantState(quiet, timeout time.Duration) api.NodeState {
	switch {
	case quiet > timeout+grace:
		return api.NodeStateDown
	case quiet > timeout:
		return api.NodeStateUnknown
	}
	return api.NodeStateReady
}

func TestNodeDownWhenGossipSaysDead(t *testing.T) {
	f := newFixture(t)
	f.run()
	f.addNode("dead", api.NodeStateUnknown)
	f.addNode("quiet", api.NodeStateUnknown) // stops beating too, but gossip still sees it
	f.beat("dead", hb("d"))
	f.beat("quiet", hb("q"))
	f.gossip.kill("dead")

	start := f.clk.Now()
	step := period / 4
	for f.clk.Now().Sub(start) < timeout {
		f.clk.step(t, step)
		quiet := f.clk.Now().Sub(start)
		want := api.NodeStateReady
		if quiet > 2*period {
			want = api.NodeStateDown
		}
		if got := f.state("dead"); got != want {
			t.Fatalf("dead after %v: got %q, want %q", quiet, got, want)
		}
		if got := f.state("quiet"); got != api.NodeStateReady {
			t.Fatalf("quiet after %v: got %q, want ready until the timeout", quiet, got)
		}
	}
	if msg := f.node("dead").Status.Message; !strings.Contains(msg, "gossip") {
		t.Errorf("got message %q, want it to name gossip", msg)
	}
	f.clk.step(t, step)
	if got := f.state("quiet"); got != api.NodeStateUnknown {
		t.Errorf("quiet after the timeout: got %q, want unknown: gossip still reaches it", got)
	}
	f.clk.step(t, grace)
	if got := f.state("quiet"); got != api.NodeStateDown {
		t.Errorf("quiet after the grace: got %q, want down", got)
	}
}

// TestRunWithFakeTicker drives Run with clock.Fake's own ticker, as the
// manager wires it, and polls the store.
func TestRunWithFakeTicker(t *testing.T) {
	clk := clock.NewFake(t0)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	st := store.New(clk, log)
	d := dispatcher.New(dispatcher.Config{Store: st, Gossip: &fakeGossip{}, Clock: clk, Logger: log})
	if err := st.Update(context.Background(), func(tx *store.Tx) error {
		return tx.PutNode(&api.Node{ID: "n1", Spec: api.NodeSpec{Role: api.RoleWorker}, Status: api.NodeStatus{State: api.NodeStateUnknown}})
	}); err != nil {
		t.Fatalf("put node: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); d.Run(ctx) }()
	defer func() { cancel(); <-done }()

	deadline := time.Now().Add(10 * time.Second)
	for {
		_, err := d.Heartbeat(ctx, "n1", "", ptr(hb("a")))
		if err == nil {
			break
		}
		if !errors.Is(err, dispatcher.ErrNotReady) || time.Now().After(deadline) {
			t.Fatalf("Heartbeat: %v", err)
		}
	}
	beatAt := clk.Now()
	state := func() api.NodeState {
		var s api.NodeState
		st.View(func(tx store.ReadTx) { s = tx.Node("n1").Status.State })
		return s
	}
	if state() != api.NodeStateReady {
		t.Fatalf("got %q after a heartbeat, want ready", state())
	}
	// Gossip does not say it died: down after three periods and the
	// default grace. Ticks a slow reader misses are dropped, so keep moving
	// the clock until a check sees the node quiet.
	for state() != api.NodeStateDown {
		if time.Now().After(deadline) {
			t.Fatalf("node still %q %v after its last heartbeat", state(), clk.Now().Sub(beatAt))
		}
		clk.Advance(period / 4)
	}
	if quiet, want := clk.Now().Sub(beatAt), 3*dispatcher.DefaultPeriod+dispatcher.DefaultGrace; quiet <= want {
		t.Errorf("node down %v after its last heartbeat, want more than %v", quiet, want)
	}
}

// Beats carry the managers' endpoints, from the dispatcher's own copy of
// the nodes rather than a read of every node per beat.
func TestHeartbeatListsManagers(t *testing.T) {
	f := newFixture(t)
	f.run()
	f.addNode("n1", api.NodeStateReady)
	mgr := &api.Node{ID: "m1", Spec: api.NodeSpec{Role: api.RoleManager}, Endpoints: api.Endpoints{API: "10.0.0.1:2377", Gossip: "10.0.0.1:7946"}}
	if err := f.store.Update(context.Background(), func(tx *store.Tx) error { return tx.PutNode(mgr) }); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp := f.beat("n1", hb("a"))
		if len(resp.Managers) == 1 && resp.Managers[0] == mgr.Endpoints {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("got managers %+v, want [%+v]", resp.Managers, mgr.Endpoints)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
