package gossip

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

const (
	pollEvery   = 50 * time.Millisecond
	pollCeiling = 10 * time.Second
)

func testKey(t *testing.T) []byte {
	t.Helper()
	k, err := NewKey()
	if err != nil {
		t.Fatalf("NewKey: %v", err)
	}
	return k
}

// testLogger discards memberlist's chatter unless GOSSIP_TEST_LOG is set.
func testLogger() *slog.Logger {
	if os.Getenv("GOSSIP_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

type testNode struct {
	*Gossip
	reg *prometheus.Registry
	key []byte
}

// startNode starts gossip on loopback with a port memberlist picks free
// (it retries the bind until TCP and UDP both get the same port).
func startNode(t *testing.T, id string, key []byte) testNode {
	t.Helper()
	reg := prometheus.NewRegistry()
	g, err := Start(Config{
		NodeID:   id,
		BindIP:   "127.0.0.1",
		Key:      key,
		Meta:     Meta{Role: "worker", API: id + ":2377"},
		Logger:   testLogger(),
		Registry: reg,
	})
	if err != nil {
		t.Fatalf("start %s: %v", id, err)
	}
	t.Cleanup(func() { _ = g.Shutdown() })
	return testNode{g, reg, key}
}

// startCluster starts n nodes ("n1".."nN") and joins them all to n1.
func startCluster(t *testing.T, n int) []testNode {
	t.Helper()
	key := testKey(t)
	nodes := make([]testNode, n)
	for i := range nodes {
		nodes[i] = startNode(t, fmt.Sprintf("n%d", i+1), key)
		if i > 0 {
			if _, err := nodes[i].Join([]string{nodes[0].Addr()}); err != nil {
				t.Fatalf("n%d join: %v", i+1, err)
			}
		}
	}
	for _, nd := range nodes {
		waitState(t, nd, "every member alive", func(ms []Member) bool {
			return len(ms) == n && countState(ms, StateAlive) == n
		})
	}
	return nodes
}

func countState(ms []Member, s MemberState) int {
	c := 0
	for _, m := range ms {
		if m.State == s {
			c++
		}
	}
	return c
}

func findMember(ms []Member, id string) (Member, bool) {
	for _, m := range ms {
		if m.ID == id {
			return m, true
		}
	}
	return Member{}, false
}

// waitState polls nd.Members() until cond holds or the ceiling passes.
func waitState(t *testing.T, nd testNode, what string, cond func([]Member) bool) {
	t.Helper()
	deadline := time.Now().Add(pollCeiling)
	for {
		ms := nd.Members()
		if cond(ms) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %s not reached; members %+v", nd.ID(), what, ms)
		}
		time.Sleep(pollEvery)
	}
}

func memberState(id string, want MemberState) func([]Member) bool {
	return func(ms []Member) bool {
		m, ok := findMember(ms, id)
		return ok && m.State == want
	}
}

// gauge reads shoal_gossip_members by state from a registry.
func gauge(t *testing.T, reg *prometheus.Registry) map[string]float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		if mf.GetName() != "shoal_gossip_members" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "state" {
					out[l.GetValue()] = m.GetGauge().GetValue()
				}
			}
		}
	}
	return out
}

func checkGauge(t *testing.T, reg *prometheus.Registry, want map[string]float64) {
	t.Helper()
	got := gauge(t, reg)
	for _, s := range []string{"alive", "suspect", "dead", "left"} {
		if got[s] != want[s] {
			t.Errorf("shoal_gossip_members{state=%q}: got %v, want %v (all: %v)", s, got[s], want[s], got)
		}
	}
}

func TestJoinMetaAndMetrics(t *testing.T) {
	t.Parallel()
	nodes := startCluster(t, 3)

	for _, nd := range nodes {
		ms := nd.Members()
		for i, m := range ms {
			want := fmt.Sprintf("n%d", i+1)
			if m.ID != want {
				t.Errorf("%s: member %d: got ID %q, want %q (sorted)", nd.ID(), i, m.ID, want)
			}
			if wantMeta := (Meta{Role: "worker", API: want + ":2377"}); m.Meta != wantMeta {
				t.Errorf("%s sees %s meta: got %+v, want %+v", nd.ID(), m.ID, m.Meta, wantMeta)
			}
			if wantAddr := nodes[i].Addr(); m.Addr != wantAddr {
				t.Errorf("%s sees %s addr: got %q, want %q", nd.ID(), m.ID, m.Addr, wantAddr)
			}
		}
		if s, ok := nd.State("n2"); !ok || s != StateAlive {
			t.Errorf("%s: State(n2): got %q %v, want alive true", nd.ID(), s, ok)
		}
		if _, ok := nd.State("nope"); ok {
			t.Errorf("%s: State(nope) known, want unknown", nd.ID())
		}
		checkGauge(t, nd.reg, map[string]float64{"alive": 3})
	}

	events, cancel := nodes[0].Subscribe()
	defer cancel()
	newMeta := Meta{Role: "manager", API: "10.0.0.2:2377"}
	if err := nodes[1].UpdateMeta(newMeta); err != nil {
		t.Fatalf("UpdateMeta: %v", err)
	}
	for _, nd := range nodes {
		waitState(t, nd, "n2's new meta", func(ms []Member) bool {
			m, ok := findMember(ms, "n2")
			return ok && m.Meta == newMeta && m.State == StateAlive
		})
	}
	select {
	case ev := <-events:
		if ev.Member.ID != "n2" || ev.Member.Meta != newMeta {
			t.Errorf("event: got %+v, want n2 with %+v", ev, newMeta)
		}
	case <-time.After(pollCeiling):
		t.Fatal("no event for n2's meta update")
	}

	if err := nodes[1].UpdateMeta(Meta{API: strings.Repeat("x", 600)}); !errors.Is(err, ErrMetaTooLarge) {
		t.Errorf("UpdateMeta with 600-byte API: got %v, want %v", err, ErrMetaTooLarge)
	}
}

func TestStartRejectsBadConfig(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		cfg  Config
		want error
	}{
		{"no key", Config{NodeID: "a", BindIP: "127.0.0.1"}, ErrInvalidKey},
		{"aes-128 key", Config{NodeID: "a", BindIP: "127.0.0.1", Key: make([]byte, 16)}, ErrInvalidKey},
		{"short key", Config{NodeID: "a", BindIP: "127.0.0.1", Key: make([]byte, 31)}, ErrInvalidKey},
		{"no id", Config{BindIP: "127.0.0.1", Key: make([]byte, 32)}, ErrNoNodeID},
		{"meta too large", Config{NodeID: "a", BindIP: "127.0.0.1", Key: make([]byte, 32),
			Meta: Meta{Role: strings.Repeat("r", 520)}}, ErrMetaTooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g, err := Start(tt.cfg)
			if err == nil {
				_ = g.Shutdown()
			}
			if !errors.Is(err, tt.want) {
				t.Errorf("got %v, want %v", err, tt.want)
			}
		})
	}
}

func TestWrongKeyCannotJoin(t *testing.T) {
	t.Parallel()
	a := startNode(t, "a", testKey(t))
	b := startNode(t, "b", testKey(t))
	n, err := b.Join([]string{a.Addr()})
	if err == nil {
		t.Fatalf("join with another key: got %d joined and no error, want an error", n)
	}
	if n != 0 {
		t.Errorf("joined: got %d, want 0", n)
	}
	if !strings.Contains(err.Error(), a.Addr()) {
		t.Errorf("error %q does not name the seed %s", err, a.Addr())
	}
	for _, nd := range []testNode{a, b} {
		if ms := nd.Members(); len(ms) != 1 || ms[0].ID != nd.ID() {
			t.Errorf("%s members: got %+v, want only itself", nd.ID(), ms)
		}
	}
}

func TestJoinNamesFailedSeeds(t *testing.T) {
	t.Parallel()
	a := startNode(t, "a", testKey(t))
	if _, err := a.Join(nil); !errors.Is(err, ErrNoSeeds) {
		t.Errorf("Join(nil): got %v, want %v", err, ErrNoSeeds)
	}
	// A closed port on loopback refuses at once.
	dead := "127.0.0.1:1"
	n, err := a.Join([]string{dead})
	if err == nil || n != 0 || !strings.Contains(err.Error(), dead) {
		t.Errorf("Join(%s): got %d, %v; want 0 and an error naming it", dead, n, err)
	}
}

func TestCrashThenRestart(t *testing.T) {
	t.Parallel()
	nodes := startCluster(t, 3)
	events, cancel := nodes[0].Subscribe()
	defer cancel()

	// Shutdown without Leave: the others must find out by probing.
	if err := nodes[2].Shutdown(); err != nil {
		t.Fatalf("shutdown: %v", err)
	}
	for _, nd := range nodes[:2] {
		waitState(t, nd, "n3 dead", memberState("n3", StateDead))
	}
	checkGauge(t, nodes[0].reg, map[string]float64{"alive": 2, "dead": 1})
	waitEvent(t, events, "n3", StateDead)

	// The same ID comes back on another port. Memberlist holds a dead
	// node's address for DeadNodeReclaimTime, so keep joining until the
	// others take the new address.
	oldAddr := nodes[2].Addr()
	n3 := startNode(t, "n3", nodes[0].key)
	if n3.Addr() == oldAddr {
		t.Fatalf("restarted on the same address %s", oldAddr)
	}
	deadline := time.Now().Add(3 * pollCeiling / 2)
	for {
		_, _ = n3.Join([]string{nodes[0].Addr()})
		m0, _ := findMember(nodes[0].Members(), "n3")
		m1, _ := findMember(nodes[1].Members(), "n3")
		if m0.State == StateAlive && m1.State == StateAlive && m0.Addr == n3.Addr() && m1.Addr == n3.Addr() {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("restarted n3 not alive at %s: n1 sees %+v, n2 sees %+v", n3.Addr(), m0, m1)
		}
		time.Sleep(10 * pollEvery)
	}
	waitEvent(t, events, "n3", StateAlive)
	checkGauge(t, nodes[0].reg, map[string]float64{"alive": 3})
}

func TestLeaveThenRestart(t *testing.T) {
	t.Parallel()
	nodes := startCluster(t, 3)
	events, cancel := nodes[0].Subscribe()
	defer cancel()

	if err := nodes[2].Leave(2 * time.Second); err != nil {
		t.Fatalf("leave: %v", err)
	}
	if s, _ := nodes[2].State("n3"); s != StateLeft {
		t.Errorf("n3 sees itself: got %q, want %q", s, StateLeft)
	}
	if err := nodes[2].Shutdown(); err != nil {
		t.Fatalf("shutdown: %v", err)
	}
	for _, nd := range nodes[:2] {
		waitState(t, nd, "n3 left", memberState("n3", StateLeft))
	}
	checkGauge(t, nodes[0].reg, map[string]float64{"alive": 2, "left": 1})
	waitEvent(t, events, "n3", StateLeft)

	// A node that left can come back at once, on another port.
	n3 := startNode(t, "n3", nodes[0].key)
	if _, err := n3.Join([]string{nodes[1].Addr()}); err != nil {
		t.Fatalf("rejoin: %v", err)
	}
	for _, nd := range []testNode{nodes[0], nodes[1], n3} {
		waitState(t, nd, "n3 alive at its new address", func(ms []Member) bool {
			m, ok := findMember(ms, "n3")
			return ok && m.State == StateAlive && m.Addr == n3.Addr() && countState(ms, StateAlive) == 3
		})
	}

	// Leave the cluster for good this time, and be forgotten.
	if err := n3.Leave(2 * time.Second); err != nil {
		t.Fatalf("second leave: %v", err)
	}
	waitState(t, nodes[0], "n3 left again", memberState("n3", StateLeft))
	nodes[0].Forget("n3")
	if _, ok := nodes[0].State("n3"); ok {
		t.Errorf("n3 still known after Forget")
	}
	if ms := nodes[0].Members(); len(ms) != 2 {
		t.Errorf("members after Forget: got %+v, want n1 and n2", ms)
	}
}

func TestShutdownIsIdempotentAndClosesSubscriptions(t *testing.T) {
	t.Parallel()
	a := startNode(t, "a", testKey(t))
	events, cancel := a.Subscribe()
	defer cancel()
	for i := range 2 {
		if err := a.Shutdown(); err != nil {
			t.Fatalf("shutdown %d: %v", i+1, err)
		}
	}
	select {
	case _, ok := <-events:
		for ok {
			_, ok = <-events
		}
	case <-time.After(pollCeiling):
		t.Fatal("subscription not closed by Shutdown")
	}
	if err := a.Leave(time.Second); !errors.Is(err, ErrShutdown) {
		t.Errorf("Leave after Shutdown: got %v, want %v", err, ErrShutdown)
	}
	if err := a.UpdateMeta(Meta{}); !errors.Is(err, ErrShutdown) {
		t.Errorf("UpdateMeta after Shutdown: got %v, want %v", err, ErrShutdown)
	}
	if _, err := a.Join([]string{"127.0.0.1:1"}); !errors.Is(err, ErrShutdown) {
		t.Errorf("Join after Shutdown: got %v, want %v", err, ErrShutdown)
	}
	// The collector is unregistered, so the ID can start again on the same registry.
	if err := a.reg.Register(collector{a.Gossip}); err != nil {
		t.Errorf("register after Shutdown: %v", err)
	}
}

// waitEvent reads events until one says member id reached state.
func waitEvent(t *testing.T, events <-chan Event, id string, state MemberState) {
	t.Helper()
	timeout := time.After(pollCeiling)
	for {
		select {
		case ev, ok := <-events:
			if !ok {
				t.Fatalf("events closed before %s became %s", id, state)
			}
			if ev.Member.ID == id && ev.Member.State == state {
				return
			}
		case <-timeout:
			t.Fatalf("no event for %s becoming %s", id, state)
		}
	}
}
