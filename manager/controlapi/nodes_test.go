package controlapi_test

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/shoal-dev/shoal/api"
	"github.com/shoal-dev/shoal/store"
)

func TestAccess(t *testing.T) {
	f, m := leaderFixture(t)
	f.addNode("w1", "host-w1", api.RoleWorker, api.NodeStateReady)
	managerCert := f.cert("m1", api.RoleManager)
	workerCert := f.cert("w1", api.RoleWorker)
	callers := map[string]*client{
		"anonymous": m.as(nil),
		"worker":    m.as(&workerCert),
		"manager":   m.as(&managerCert),
		"admin":     m.admin(),
	}
	tests := []struct {
		caller, method, path string
		want                 int
	}{
		{"anonymous", "GET", "/v1/nodes", http.StatusForbidden},
		{"worker", "GET", "/v1/nodes", http.StatusForbidden},
		{"manager", "GET", "/v1/nodes", http.StatusOK},
		{"admin", "GET", "/v1/nodes", http.StatusOK},
		{"worker", "GET", "/v1/nodes/w1", http.StatusForbidden},
		{"manager", "GET", "/v1/nodes/w1", http.StatusOK},
		{"worker", "GET", "/v1/join-tokens", http.StatusForbidden},
		{"anonymous", "GET", "/v1/join-tokens", http.StatusForbidden},
		{"manager", "GET", "/v1/join-tokens", http.StatusOK},
		{"worker", "POST", "/v1/join-tokens/rotate?role=worker", http.StatusForbidden},
		{"worker", "POST", "/v1/nodes/w1/promote", http.StatusForbidden},
		{"worker", "DELETE", "/v1/nodes/w1?force=1", http.StatusForbidden},
		{"anonymous", "POST", "/v1/session/heartbeat", http.StatusUnauthorized},
		{"anonymous", "POST", "/v1/session/leave", http.StatusUnauthorized},
		{"anonymous", "GET", "/v1/ca", http.StatusOK},
	}
	for _, tt := range tests {
		t.Run(tt.caller+" "+tt.method+" "+tt.path, func(t *testing.T) {
			a := callers[tt.caller].do(tt.method, tt.path, nil)
			want(t, a, tt.want)
			if tt.want == http.StatusForbidden && tt.caller == "anonymous" && !strings.Contains(a.message(), "anonymous") {
				t.Errorf("got message %q, want it to name the anonymous caller", a.message())
			}
		})
	}
	if f.node("w1") == nil {
		t.Errorf("the refused calls removed w1")
	}
}

func TestListNodesView(t *testing.T) {
	f, m := leaderFixture(t)
	f.addNode("m2", "host-m2", api.RoleManager, api.NodeStateReady)
	f.addNode("m3", "host-m3", api.RoleManager, api.NodeStateReady)
	f.addNode("w1", "host-w1", api.RoleWorker, api.NodeStateReady)
	m.raft.voters = []string{"m1", "m2", "m3"}
	m.gossip.set("m2", true)

	var views []api.NodeView
	want(t, m.admin().do("GET", "/v1/nodes", nil), http.StatusOK).decode(t, &views)
	got := map[string]string{}
	for _, v := range views {
		got[v.ID] = v.ManagerStatus
	}
	wantStatus := map[string]string{"m1": api.ManagerLeader, "m2": api.ManagerReachable, "m3": api.ManagerUnreachable, "w1": ""}
	if !maps.Equal(got, wantStatus) {
		t.Errorf("got manager status %v, want %v", got, wantStatus)
	}
}

func TestFindNode(t *testing.T) {
	f, m := leaderFixture(t)
	f.addNode("w1aaaa", "alpha", api.RoleWorker, api.NodeStateReady)
	f.addNode("w1bbbb", "dup", api.RoleWorker, api.NodeStateReady)
	f.addNode("w2cccc", "dup", api.RoleWorker, api.NodeStateReady)
	tests := []struct {
		ref    string
		want   int
		wantID string
	}{
		{"w1aaaa", http.StatusOK, "w1aaaa"},
		{"w1a", http.StatusOK, "w1aaaa"},
		{"alpha", http.StatusOK, "w1aaaa"},
		{"w2", http.StatusOK, "w2cccc"},
		{"w1", http.StatusBadRequest, ""},  // two IDs start with it
		{"dup", http.StatusBadRequest, ""}, // two nodes have that hostname
		{"nothere", http.StatusNotFound, ""},
	}
	for _, tt := range tests {
		t.Run(tt.ref, func(t *testing.T) {
			a := want(t, m.admin().do("GET", "/v1/nodes/"+tt.ref, nil), tt.want)
			switch tt.want {
			case http.StatusOK:
				var v api.NodeView
				a.decode(t, &v)
				if v.ID != tt.wantID {
					t.Errorf("got node %s, want %s", v.ID, tt.wantID)
				}
			case http.StatusBadRequest:
				if !strings.Contains(a.message(), "ambiguous") {
					t.Errorf("got message %q, want it to say ambiguous", a.message())
				}
			}
		})
	}
	// Writes resolve the same way and an ambiguous one changes nothing.
	before := f.node("w1bbbb")
	want(t, m.admin().do("POST", "/v1/nodes/dup/update", api.NodeUpdate{Availability: api.AvailabilityDrain}), http.StatusBadRequest)
	if after := f.node("w1bbbb"); after.Meta.Version != before.Meta.Version {
		t.Errorf("got version %d after an ambiguous update, want %d", after.Meta.Version, before.Meta.Version)
	}
	want(t, m.admin().do("POST", "/v1/nodes/alpha/update", api.NodeUpdate{Availability: api.AvailabilityPause}), http.StatusOK)
	if got := f.node("w1aaaa").Spec.Availability; got != api.AvailabilityPause {
		t.Errorf("got availability %q, want pause", got)
	}
}

func TestUpdateNode(t *testing.T) {
	tests := []struct {
		name       string
		body       any
		want       int
		wantAvail  api.Availability
		wantLabels map[string]string
	}{
		{"drain", api.NodeUpdate{Availability: api.AvailabilityDrain}, http.StatusOK, api.AvailabilityDrain, map[string]string{"zone": "a"}},
		{"bad availability", api.NodeUpdate{Availability: "asleep"}, http.StatusBadRequest, api.AvailabilityActive, map[string]string{"zone": "a"}},
		{"label add", api.NodeUpdate{LabelAdd: map[string]string{"disk": "ssd"}}, http.StatusOK, api.AvailabilityActive, map[string]string{"zone": "a", "disk": "ssd"}},
		{"label replace", api.NodeUpdate{LabelAdd: map[string]string{"zone": "b"}}, http.StatusOK, api.AvailabilityActive, map[string]string{"zone": "b"}},
		{"label rm", api.NodeUpdate{LabelRm: []string{"zone"}}, http.StatusOK, api.AvailabilityActive, map[string]string{}},
		{"label rm and add", api.NodeUpdate{LabelRm: []string{"zone"}, LabelAdd: map[string]string{"rack": "7"}}, http.StatusOK, api.AvailabilityActive, map[string]string{"rack": "7"}},
		{"rm of a missing label", api.NodeUpdate{Availability: api.AvailabilityDrain, LabelRm: []string{"zone", "nope"}}, http.StatusBadRequest, api.AvailabilityActive, map[string]string{"zone": "a"}},
		{"bad label key", api.NodeUpdate{LabelAdd: map[string]string{"a=b": "c"}}, http.StatusBadRequest, api.AvailabilityActive, map[string]string{"zone": "a"}},
		{"unknown field", []byte(`{"availability":"drain","role":"manager"}`), http.StatusBadRequest, api.AvailabilityActive, map[string]string{"zone": "a"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, m := leaderFixture(t)
			f.addNode("w1", "host-w1", api.RoleWorker, api.NodeStateReady)
			f.update(func(tx *store.Tx) error {
				n := tx.Node("w1")
				n.Spec.Labels = map[string]string{"zone": "a"}
				return tx.PutNode(n)
			})
			before := f.node("w1")
			a := want(t, m.admin().do("POST", "/v1/nodes/w1/update", tt.body), tt.want)
			n := f.node("w1")
			if tt.want != http.StatusOK {
				if n.Meta.Version != before.Meta.Version {
					t.Errorf("got version %d after a refused update, want %d", n.Meta.Version, before.Meta.Version)
				}
			} else {
				var v api.NodeView
				a.decode(t, &v)
				if v.Meta.Version != n.Meta.Version {
					t.Errorf("got answered version %d, want the stored %d", v.Meta.Version, n.Meta.Version)
				}
			}
			if n.Spec.Availability != tt.wantAvail {
				t.Errorf("got availability %q, want %q", n.Spec.Availability, tt.wantAvail)
			}
			labels := n.Spec.Labels
			if labels == nil {
				labels = map[string]string{}
			}
			if !maps.Equal(labels, tt.wantLabels) {
				t.Errorf("got labels %v, want %v", labels, tt.wantLabels)
			}
		})
	}
}

func TestPromote(t *testing.T) {
	f, m := leaderFixture(t)
	f.addNode("w1", "host-w1", api.RoleWorker, api.NodeStateReady)
	f.addNode("w2", "host-w2", api.RoleWorker, api.NodeStateDown)

	var v api.NodeView
	want(t, m.admin().do("POST", "/v1/nodes/w1/promote", nil), http.StatusOK).decode(t, &v)
	if v.Spec.Role != api.RoleManager || f.node("w1").Spec.Role != api.RoleManager {
		t.Errorf("got role %q (stored %q), want manager", v.Spec.Role, f.node("w1").Spec.Role)
	}
	want(t, m.admin().do("POST", "/v1/nodes/w1/promote", nil), http.StatusBadRequest)
	want(t, m.admin().do("POST", "/v1/nodes/w2/promote", nil), http.StatusBadRequest)
	if got := f.node("w2").Spec.Role; got != api.RoleWorker {
		t.Errorf("got role %q for a down node after promote, want worker", got)
	}
	if got := m.raft.Added(); len(got) != 0 {
		t.Errorf("got AddVoter calls %v, want none (the node asks to join raft itself)", got)
	}
}

func TestDemote(t *testing.T) {
	tests := []struct {
		name        string
		managers    []string // besides m1, which is this manager and the leader
		alive       []string
		target      string
		removeErr   error
		want        int
		wantMsg     string
		wantRole    api.NodeRole
		wantRemoved []string
	}{
		{name: "reachable quorum", managers: []string{"m2", "m3"}, alive: []string{"m2", "m3"}, target: "m2",
			want: http.StatusOK, wantRole: api.RoleWorker, wantRemoved: []string{"m2"}},
		{name: "the unreachable one", managers: []string{"m2", "m3"}, alive: []string{"m2"}, target: "m3",
			want: http.StatusOK, wantRole: api.RoleWorker, wantRemoved: []string{"m3"}},
		{name: "leaving the unreachable one alone", managers: []string{"m2", "m3"}, alive: []string{"m2"}, target: "m2",
			want: http.StatusBadRequest, wantMsg: "quorum", wantRole: api.RoleManager},
		{name: "self with a reachable peer", managers: []string{"m2"}, alive: []string{"m2"}, target: "m1",
			want: http.StatusOK, wantRole: api.RoleWorker, wantRemoved: []string{"m1"}},
		{name: "last manager", target: "m1",
			want: http.StatusBadRequest, wantMsg: "last manager", wantRole: api.RoleManager},
		{name: "others unreachable", managers: []string{"m2", "m3"}, target: "m2",
			want: http.StatusBadRequest, wantMsg: "quorum", wantRole: api.RoleManager},
		{name: "only peer unreachable", managers: []string{"m2"}, target: "m1",
			want: http.StatusBadRequest, wantMsg: "quorum", wantRole: api.RoleManager},
		{name: "a worker", target: "w1",
			want: http.StatusBadRequest, wantMsg: "already a worker", wantRole: api.RoleWorker},
		{name: "raft removal fails", managers: []string{"m2", "m3"}, alive: []string{"m2", "m3"}, target: "m3", removeErr: errors.New("no quorum"),
			want: http.StatusServiceUnavailable, wantMsg: "raft removal failed", wantRole: api.RoleWorker, wantRemoved: []string{"m3"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t)
			f.addNode("m1", "host-m1", api.RoleManager, api.NodeStateReady)
			f.addNode("w1", "host-w1", api.RoleWorker, api.NodeStateReady)
			for _, id := range tt.managers {
				f.addNode(id, "host-"+id, api.RoleManager, api.NodeStateReady)
			}
			r := &fakeRaft{leader: true, leaderID: "m1", voters: append([]string{"m1"}, tt.managers...), removeErr: tt.removeErr}
			m := f.startManager("m1", r, nil)
			for _, id := range tt.alive {
				m.gossip.set(id, true)
			}
			a := want(t, m.admin().do("POST", "/v1/nodes/"+tt.target+"/demote", nil), tt.want)
			if tt.wantMsg != "" && !strings.Contains(a.message(), tt.wantMsg) {
				t.Errorf("got message %q, want it to contain %q", a.message(), tt.wantMsg)
			}
			if got := f.node(tt.target).Spec.Role; got != tt.wantRole {
				t.Errorf("got role %q, want %q", got, tt.wantRole)
			}
			if got := r.Removed(); !slices.Equal(got, tt.wantRemoved) {
				t.Errorf("got RemoveServer calls %v, want %v", got, tt.wantRemoved)
			}
		})
	}
}

func TestRemoveNode(t *testing.T) {
	tests := []struct {
		name, path  string
		want        int
		wantRemoved bool
	}{
		{"manager", "/v1/nodes/m2?force=1", http.StatusBadRequest, false},
		{"ready worker", "/v1/nodes/ready", http.StatusBadRequest, false},
		{"ready worker forced", "/v1/nodes/ready?force=1", http.StatusNoContent, true},
		{"unknown worker", "/v1/nodes/unknown", http.StatusBadRequest, false},
		{"down worker", "/v1/nodes/down", http.StatusNoContent, true},
		{"down worker by hostname", "/v1/nodes/host-down", http.StatusNoContent, true},
		{"missing", "/v1/nodes/nothere", http.StatusNotFound, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, m := leaderFixture(t)
			f.addNode("m2", "host-m2", api.RoleManager, api.NodeStateReady)
			f.addNode("ready", "host-ready", api.RoleWorker, api.NodeStateReady)
			f.addNode("unknown", "host-unknown", api.RoleWorker, api.NodeStateUnknown)
			f.addNode("down", "host-down", api.RoleWorker, api.NodeStateDown)
			before := f.nodeCount()
			want(t, m.admin().do("DELETE", tt.path, nil), tt.want)
			wantCount := before
			if tt.wantRemoved {
				wantCount--
			}
			if got := f.nodeCount(); got != wantCount {
				t.Errorf("got %d nodes, want %d", got, wantCount)
			}
			if got := m.raft.Removed(); len(got) != 0 {
				t.Errorf("got RemoveServer calls %v, want none", got)
			}
		})
	}
}

func TestSessionLeave(t *testing.T) {
	f, m := leaderFixture(t)
	f.addNode("m2", "host-m2", api.RoleManager, api.NodeStateReady)
	f.addNode("w1", "host-w1", api.RoleWorker, api.NodeStateReady)
	m.raft.voters = []string{"m1", "m2"}

	want(t, m.asNode("w1", api.RoleWorker).do("POST", "/v1/session/leave", nil), http.StatusNoContent)
	if f.node("w1") != nil {
		t.Errorf("w1 still stored after it left")
	}
	if got := m.raft.Removed(); len(got) != 0 {
		t.Errorf("got RemoveServer calls %v after a worker left, want none", got)
	}
	want(t, m.asNode("w1", api.RoleWorker).do("POST", "/v1/session/leave", nil), http.StatusNotFound)

	want(t, m.asNode("m2", api.RoleManager).do("POST", "/v1/session/leave", nil), http.StatusNoContent)
	if f.node("m2") != nil {
		t.Errorf("m2 still stored after it left")
	}
	if got, wantRemoved := m.raft.Removed(), []string{"m2"}; !slices.Equal(got, wantRemoved) {
		t.Errorf("got RemoveServer calls %v, want %v", got, wantRemoved)
	}
}

func TestHeartbeatOnLeader(t *testing.T) {
	f, m := leaderFixture(t)
	f.addNode("w1", "host-w1", api.RoleWorker, api.NodeStateReady)
	var resp api.HeartbeatResponse
	want(t, m.asNode("w1", api.RoleWorker).do("POST", "/v1/session/heartbeat", api.Heartbeat{Addr: "127.0.0.1"}), http.StatusOK).decode(t, &resp)
	if got := m.disp.Seen(); !slices.Equal(got, []string{"w1"}) {
		t.Errorf("got heartbeats for %v, want [w1]", got)
	}
	if resp.LeaderID != "m1" || len(resp.Managers) != 1 || resp.Managers[0] != f.node("m1").Endpoints {
		t.Errorf("got leader %q managers %+v, want m1 and m1's endpoints", resp.LeaderID, resp.Managers)
	}
	want(t, m.asNode("w1", api.RoleWorker).do("POST", "/v1/session/heartbeat", []byte(`{"addr":"127.0.0.1","extra":1}`)), http.StatusBadRequest)
	// No body: a beat that says nothing changed reaches the dispatcher as such.
	want(t, m.asNode("w1", api.RoleWorker).do("POST", "/v1/session/heartbeat", nil), http.StatusOK)
	want(t, m.asNode("w1", api.RoleWorker).do("POST", "/v1/session/heartbeat", []byte(" \n")), http.StatusOK)
	if got, wantSeen := m.disp.Seen(), []string{"w1", "w1 (empty)", "w1 (empty)"}; !slices.Equal(got, wantSeen) {
		t.Errorf("got heartbeats %q, want %q", got, wantSeen)
	}
}

func TestFollowerWithoutLeader(t *testing.T) {
	f := newFixture(t)
	f.addNode("m1", "host-m1", api.RoleManager, api.NodeStateReady)
	f.addNode("m2", "host-m2", api.RoleManager, api.NodeStateReady)
	f.addNode("w1", "host-w1", api.RoleWorker, api.NodeStateReady)
	m := f.startManager("m2", &fakeRaft{voters: []string{"m1", "m2"}}, nil)

	calls := []struct {
		name   string
		c      *client
		method string
		path   string
		body   any
	}{
		{"admin promote", m.admin(), "POST", "/v1/nodes/w1/promote", nil},
		{"admin rotate", m.admin(), "POST", "/v1/join-tokens/rotate?role=worker", nil},
		{"worker heartbeat", m.asNode("w1", api.RoleWorker), "POST", "/v1/session/heartbeat", api.Heartbeat{}},
		{"anonymous join", m.as(nil), "POST", "/v1/join", api.JoinRequest{}},
	}
	for _, tt := range calls {
		t.Run(tt.name, func(t *testing.T) {
			a := want(t, tt.c.do(tt.method, tt.path, tt.body), http.StatusServiceUnavailable)
			if !strings.Contains(a.message(), "quorum") {
				t.Errorf("got message %q, want it to name the missing quorum", a.message())
			}
		})
	}
	if got := f.node("w1").Spec.Role; got != api.RoleWorker {
		t.Errorf("got role %q, want worker: the follower must not write", got)
	}
	// Nor does it answer reads: it cannot tell whether its state is current.
	if a := want(t, m.admin().do("GET", "/v1/nodes/w1", nil), http.StatusServiceUnavailable); !strings.Contains(a.message(), "no leader") {
		t.Errorf("got message %q, want it to say there is no leader", a.message())
	}

	// A leader that is known but has no API address yet.
	m.raft.setLeader("w1", false)
	want(t, m.admin().do("POST", "/v1/nodes/w1/promote", nil), http.StatusServiceUnavailable)
}

// seenRequest is what the stand-in leader saw of a forwarded call.
type seenRequest struct {
	path, forwardedBy, caller string
}

func TestForwardToLeader(t *testing.T) {
	f := newFixture(t)
	f.addNode("m1", "host-m1", api.RoleManager, api.NodeStateReady)
	f.addNode("m2", "host-m2", api.RoleManager, api.NodeStateReady)
	f.addNode("w1", "host-w1", api.RoleWorker, api.NodeStateReady)

	var mu sync.Mutex
	var seen []seenRequest
	record := func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			mu.Lock()
			seen = append(seen, seenRequest{r.URL.Path, r.Header.Get("X-Shoal-Forwarded"), r.Header.Get("X-Shoal-Caller")})
			mu.Unlock()
			h.ServeHTTP(w, r)
		})
	}
	lastSeen := func() seenRequest {
		mu.Lock()
		defer mu.Unlock()
		if len(seen) == 0 {
			return seenRequest{}
		}
		return seen[len(seen)-1]
	}
	// Both managers share the store, as replicas would.
	leader := f.startManager("m1", &fakeRaft{leader: true, leaderID: "m1", voters: []string{"m1", "m2"}}, record)
	f.setAPI("m1", leader.addr())
	follower := f.startManager("m2", &fakeRaft{leaderID: "m1", voters: []string{"m1", "m2"}}, nil)

	// A worker's heartbeat reaches the leader's dispatcher under the worker's name.
	var resp api.HeartbeatResponse
	want(t, follower.asNode("w1", api.RoleWorker).do("POST", "/v1/session/heartbeat", api.Heartbeat{}), http.StatusOK).decode(t, &resp)
	want(t, follower.asNode("w1", api.RoleWorker).do("POST", "/v1/session/heartbeat", nil), http.StatusOK) // empty beats forward as such
	if got := leader.disp.Seen(); !slices.Equal(got, []string{"w1", "w1 (empty)"}) {
		t.Errorf("got heartbeats on the leader for %v, want [w1 w1 (empty)]", got)
	}
	if got := follower.disp.Seen(); len(got) != 0 {
		t.Errorf("got heartbeats on the follower for %v, want none", got)
	}
	if resp.LeaderID != "m1" {
		t.Errorf("got leader %q, want m1", resp.LeaderID)
	}
	if got := lastSeen(); got.forwardedBy != "m2" || !strings.Contains(got.caller, `"NodeID":"w1"`) || !strings.Contains(got.caller, `"Role":"worker"`) {
		t.Errorf("leader saw %+v, want a call forwarded by m2 for worker w1", got)
	}

	// The local administrator of the follower writes through the leader.
	var v api.NodeView
	want(t, follower.admin().do("POST", "/v1/nodes/w1/update", api.NodeUpdate{LabelAdd: map[string]string{"k": "v"}}), http.StatusOK).decode(t, &v)
	if v.Spec.Labels["k"] != "v" || f.node("w1").Spec.Labels["k"] != "v" {
		t.Errorf("got labels %v (stored %v), want k=v", v.Spec.Labels, f.node("w1").Spec.Labels)
	}
	if got := lastSeen(); got.path != "/v1/nodes/w1/update" || !strings.Contains(got.caller, `"Role":"admin"`) {
		t.Errorf("leader saw %+v, want the update forwarded for the admin", got)
	}

	// A worker leaving through a follower removes itself, not the follower.
	want(t, follower.asNode("w1", api.RoleWorker).do("POST", "/v1/session/leave", nil), http.StatusNoContent)
	if f.node("w1") != nil || f.node("m2") == nil {
		t.Errorf("got w1 %v m2 %v after w1 left, want w1 gone and m2 kept", f.node("w1") != nil, f.node("m2") != nil)
	}

	// Calls refused by the follower's access check never reach the leader.
	mu.Lock()
	n := len(seen)
	mu.Unlock()
	want(t, follower.asNode("w1", api.RoleWorker).do("POST", "/v1/join-tokens/rotate?role=worker", nil), http.StatusForbidden)
	mu.Lock()
	if len(seen) != n {
		t.Errorf("a refused call was forwarded to the leader")
	}
	mu.Unlock()

	// A call forwarded to a manager that is not the leader is not forwarded again.
	a := want(t, follower.asNode("m1", api.RoleManager).doHeader("POST", "/v1/join-tokens/rotate?role=worker", nil,
		http.Header{"X-Shoal-Forwarded": {"m1"}}), http.StatusServiceUnavailable)
	if !strings.Contains(a.message(), "lost leadership") {
		t.Errorf("got message %q, want it to say leadership was lost", a.message())
	}
}

func TestForwardedCallerOnlyFromManagers(t *testing.T) {
	f, m := leaderFixture(t)
	f.addNode("w1", "host-w1", api.RoleWorker, api.NodeStateReady)
	f.addNode("w2", "host-w2", api.RoleWorker, api.NodeStateReady)
	admin := http.Header{"X-Shoal-Caller": {`{"NodeID":"m1","Role":"admin","ClusterID":""}`}}

	// A worker cannot claim to be someone else.
	want(t, m.asNode("w1", api.RoleWorker).doHeader("GET", "/v1/join-tokens", nil, admin), http.StatusForbidden)
	want(t, m.asNode("w1", api.RoleWorker).doHeader("POST", "/v1/session/leave", nil,
		http.Header{"X-Shoal-Caller": {`{"NodeID":"w2","Role":"worker"}`}}), http.StatusNoContent)
	if f.node("w1") != nil || f.node("w2") == nil {
		t.Errorf("got w1 %v w2 %v, want w1 gone and w2 kept", f.node("w1") != nil, f.node("w2") != nil)
	}
	want(t, m.asNode("m1", api.RoleManager).doHeader("GET", "/v1/join-tokens", nil,
		http.Header{"X-Shoal-Caller": {`not json`}}), http.StatusBadRequest)
}

// A manager certificate outlives a demotion or removal (it is valid for
// 90 days): the store, not the certificate, says who is a manager.
func TestStaleManagerCertificate(t *testing.T) {
	f, m := leaderFixture(t)
	f.addNode("m2", "host-m2", api.RoleManager, api.NodeStateReady)
	f.addNode("m3", "host-m3", api.RoleManager, api.NodeStateReady)
	m.raft.voters = []string{"m1", "m2", "m3"}
	m.gossip.set("m3", true)
	m2 := m.asNode("m2", api.RoleManager) // issued while m2 was a manager
	want(t, m2.do("GET", "/v1/join-tokens", nil), http.StatusOK)

	want(t, m.admin().do("POST", "/v1/nodes/m2/demote", nil), http.StatusOK)
	want(t, m2.do("GET", "/v1/join-tokens", nil), http.StatusForbidden)
	want(t, m2.do("POST", "/v1/nodes/m3/demote", nil), http.StatusForbidden)
	want(t, m2.doHeader("GET", "/v1/join-tokens", nil,
		http.Header{"X-Shoal-Caller": {`{"NodeID":"m2","Role":"admin"}`}}), http.StatusForbidden)
	// It is still a node of the cluster: it beats and renews into a worker certificate.
	want(t, m2.do("POST", "/v1/session/heartbeat", api.Heartbeat{}), http.StatusOK)
	var renewed api.CertResponse
	want(t, m2.do("POST", "/v1/certs/renew", api.CertRequest{CSRPEM: newCSR(t)}), http.StatusOK).decode(t, &renewed)
	if renewed.Role != api.RoleWorker {
		t.Errorf("got renewed role %q, want worker", renewed.Role)
	}

	want(t, m.admin().do("DELETE", "/v1/nodes/m2?force=1", nil), http.StatusNoContent)
	a := want(t, m2.do("GET", "/v1/join-tokens", nil), http.StatusForbidden)
	if strings.Contains(string(a.body), f.cluster().ManagerToken) {
		t.Errorf("a removed node read the manager join token")
	}
	if got := f.node("m3").Spec.Role; got != api.RoleManager {
		t.Errorf("got m3 role %q, want manager", got)
	}
}

// TestConcurrentNodeUpdates: 8 clients updating labels of 8 different nodes
// at once, while node status is written beside them, see no conflicts: the
// store's update lock serializes read-modify-writes on the leader.
func TestConcurrentNodeUpdates(t *testing.T) {
	f, m := leaderFixture(t)
	const clients, rounds = 8, 20
	for i := range clients {
		f.addNode(fmt.Sprintf("w%d", i), fmt.Sprintf("host-w%d", i), api.RoleWorker, api.NodeStateReady)
	}
	stop := make(chan struct{})
	statusDone := make(chan struct{})
	go func() { // the dispatcher's status writes
		defer close(statusDone)
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			_ = f.store.Update(context.Background(), func(tx *store.Tx) error {
				n := tx.Node(fmt.Sprintf("w%d", i%clients))
				n.Status.Message = fmt.Sprintf("beat %d", i)
				return tx.PutNode(n)
			})
		}
	}()
	codes := make(chan int, clients*rounds)
	var wg sync.WaitGroup
	for i := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := m.admin()
			for r := range rounds {
				a := c.do("POST", fmt.Sprintf("/v1/nodes/w%d/update", i),
					api.NodeUpdate{LabelAdd: map[string]string{fmt.Sprintf("k%d", r): "v"}})
				codes <- a.code
			}
		}()
	}
	wg.Wait()
	close(stop)
	<-statusDone
	close(codes)
	bad := map[int]int{}
	for c := range codes {
		if c != http.StatusOK {
			bad[c]++
		}
	}
	if len(bad) > 0 {
		t.Fatalf("got non-200 answers %v out of %d", bad, clients*rounds)
	}
	for i := range clients {
		if n := f.node(fmt.Sprintf("w%d", i)); len(n.Spec.Labels) != rounds {
			t.Errorf("node w%d has %d labels, want %d: an update was lost", i, len(n.Spec.Labels), rounds)
		}
	}
}
