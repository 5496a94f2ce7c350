package controlapi_test

import (
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/shoal-dev/shoal/api"
	"github.com/shoal-dev/shoal/store"
)

// recorder counts the calls a stand-in manager saw, by path, and can hold
// the calls to a path until released.
type recorder struct {
	mu      sync.Mutex
	seen    map[string]int
	hold    map[string]chan struct{}
	arrived chan string
}

func newRecorder() *recorder {
	return &recorder{seen: map[string]int{}, hold: map[string]chan struct{}{}, arrived: make(chan string, 16)}
}

func (rec *recorder) wrap(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec.mu.Lock()
		rec.seen[r.URL.Path]++
		hold := rec.hold[r.URL.Path]
		rec.mu.Unlock()
		if hold != nil {
			rec.arrived <- r.URL.Path
			select {
			case <-hold:
			case <-r.Context().Done():
				return
			}
		}
		h.ServeHTTP(w, r)
	})
}

func (rec *recorder) count(path string) int {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	return rec.seen[path]
}

// holdPath makes calls to path wait until the test ends.
func (rec *recorder) holdPath(t *testing.T, path string) {
	ch := make(chan struct{})
	rec.mu.Lock()
	rec.hold[path] = ch
	rec.mu.Unlock()
	t.Cleanup(func() { close(ch) })
}

func answerIndex(t *testing.T, a answer) uint64 {
	t.Helper()
	i, err := strconv.ParseUint(a.header.Get(api.HeaderIndex), 10, 64)
	if err != nil {
		t.Fatalf("answer has %s %q: %v", api.HeaderIndex, a.header.Get(api.HeaderIndex), err)
	}
	return i
}

func TestReadYourWrites(t *testing.T) {
	f, m := leaderFixture(t)
	f.addNode("w1", "host-w1", api.RoleWorker, api.NodeStateReady)
	admin := m.admin()

	// A write answers with the index it was applied at.
	a := want(t, admin.do("POST", "/v1/nodes/w1/update", api.NodeUpdate{LabelAdd: map[string]string{"k": "v"}}), http.StatusOK)
	if got, applied := answerIndex(t, a), f.store.Index(); got != applied {
		t.Errorf("got index %d, want the applied index %d", got, applied)
	}

	// A read asking for an index this manager has not applied waits, then says so.
	ahead := strconv.FormatUint(f.store.Index()+1, 10)
	a = want(t, admin.doHeader("GET", "/v1/nodes/w1", nil, http.Header{api.HeaderIndex: {ahead}}), http.StatusServiceUnavailable)
	if !strings.Contains(a.message(), "not yet index "+ahead) {
		t.Errorf("got message %q, want it to name the index it waited for", a.message())
	}
	done := make(chan answer, 1)
	go func() { done <- admin.doHeader("GET", "/v1/nodes/w2", nil, http.Header{api.HeaderIndex: {ahead}}) }()
	f.addNode("w2", "host-w2", api.RoleWorker, api.NodeStateReady) // applies index ahead
	want(t, <-done, http.StatusOK)

	want(t, admin.doHeader("GET", "/v1/nodes", nil, http.Header{api.HeaderIndex: {"x"}}), http.StatusBadRequest)
}

func TestFollowerReadBarrier(t *testing.T) {
	f := newFixture(t)
	f.addNode("m1", "host-m1", api.RoleManager, api.NodeStateReady)
	f.addNode("m2", "host-m2", api.RoleManager, api.NodeStateReady)
	f.addNode("m3", "host-m3", api.RoleManager, api.NodeStateReady)
	rec := newRecorder()
	leader := f.startManager("m1", &fakeRaft{leader: true, leaderID: "m1"}, rec.wrap)
	f.setAPI("m1", leader.addr())
	follower := f.startManager("m2", &fakeRaft{leaderID: "m1"}, nil)

	// The first read of a term asks the leader for its read index; later ones do not.
	for range 3 {
		want(t, follower.admin().do("GET", "/v1/nodes", nil), http.StatusOK)
	}
	if got := rec.count("/v1/raft/read-index"); got != 1 {
		t.Errorf("got %d read-index calls for 3 reads in one term, want 1", got)
	}

	// Only the leader answers a read index.
	a := want(t, follower.asNode("m3", api.RoleManager).do("GET", "/v1/raft/read-index", nil), http.StatusServiceUnavailable)
	if !strings.Contains(a.message(), "not the leader") {
		t.Errorf("got message %q, want not the leader", a.message())
	}
	var ri api.ReadIndex
	want(t, leader.asNode("m3", api.RoleManager).do("GET", "/v1/raft/read-index", nil), http.StatusOK).decode(t, &ri)
	if ri.Index != f.store.Index() {
		t.Errorf("got read index %d, want the leader's applied index %d", ri.Index, f.store.Index())
	}
	want(t, leader.asNode("w9", api.RoleWorker).do("GET", "/v1/raft/read-index", nil), http.StatusForbidden)

	// A new leader whose API cannot be reached: the follower refuses to answer.
	follower.raft.setLeader("m3", false)
	a = want(t, follower.admin().do("GET", "/v1/nodes", nil), http.StatusServiceUnavailable)
	if !strings.Contains(a.message(), "cannot check this manager's cluster state with the leader m3") {
		t.Errorf("got message %q, want it to say the state could not be checked", a.message())
	}
}

func TestForwardFollowsLeaderChange(t *testing.T) {
	f := newFixture(t)
	for _, id := range []string{"m1", "m2", "m3"} {
		f.addNode(id, "host-"+id, api.RoleManager, api.NodeStateReady)
	}
	f.addNode("w1", "host-w1", api.RoleWorker, api.NodeStateReady)
	old := newRecorder()
	oldLeader := f.startManager("m1", &fakeRaft{leader: true, leaderID: "m1"}, old.wrap)
	f.setAPI("m1", oldLeader.addr())
	newLeader := f.startManager("m3", &fakeRaft{leader: true, leaderID: "m3"}, nil)
	f.setAPI("m3", newLeader.addr())
	follower := f.startManager("m2", &fakeRaft{leaderID: "m1"}, nil)

	// A read in flight to a deposed leader is sent again to the new one.
	old.holdPath(t, "/v1/session/assignments")
	done := make(chan answer, 1)
	go func() {
		done <- follower.asNode("w1", api.RoleWorker).do("GET", "/v1/session/assignments?since=0", nil)
	}()
	<-old.arrived
	follower.raft.setLeader("m3", false)
	want(t, <-done, http.StatusOK)

	// A write in flight when the leader changes may have been applied:
	// the caller is told so rather than the write being sent twice.
	follower.raft.setLeader("m1", false)
	old.holdPath(t, "/v1/nodes/w1/update")
	go func() {
		done <- follower.admin().do("POST", "/v1/nodes/w1/update", api.NodeUpdate{LabelAdd: map[string]string{"k": "v"}})
	}()
	<-old.arrived
	follower.raft.setLeader("m3", false)
	a := want(t, <-done, http.StatusServiceUnavailable)
	if !strings.Contains(a.message(), "outcome unknown") {
		t.Errorf("got message %q, want outcome unknown", a.message())
	}

	// A write not yet sent (the leader refuses connections) goes to the next leader.
	f.update(func(tx *store.Tx) error {
		n := tx.Node("m1")
		n.Endpoints.API = "127.0.0.1:1"
		return tx.PutNode(n)
	})
	follower.raft.setLeader("m1", false)
	go func() {
		done <- follower.admin().do("POST", "/v1/nodes/w1/update", api.NodeUpdate{LabelAdd: map[string]string{"k": "v2"}})
	}()
	follower.raft.setLeader("m3", false)
	a = want(t, <-done, http.StatusOK)
	if got := f.node("w1").Spec.Labels["k"]; got != "v2" {
		t.Errorf("got label %q, want v2", got)
	}
	if answerIndex(t, a) == 0 {
		t.Errorf("forwarded write answered without its index")
	}
}

func TestForwardHoldsWritesForASilentLeader(t *testing.T) {
	f := newFixture(t)
	for _, id := range []string{"m1", "m2", "m3"} {
		f.addNode(id, "host-"+id, api.RoleManager, api.NodeStateReady)
	}
	f.addNode("w1", "host-w1", api.RoleWorker, api.NodeStateReady)
	silent := newRecorder()
	m1 := f.startManager("m1", &fakeRaft{leader: true, leaderID: "m1"}, silent.wrap)
	f.setAPI("m1", m1.addr())
	m3 := f.startManager("m3", &fakeRaft{leader: true, leaderID: "m3"}, nil)
	f.setAPI("m3", m3.addr())
	follower := f.startManager("m2", &fakeRaft{leaderID: "m1", staleLeader: "m1"}, nil)

	// A write is not sent to a leader this follower has not heard from:
	// it waits for the next leader.
	done := make(chan answer, 1)
	go func() {
		done <- follower.admin().do("POST", "/v1/nodes/w1/update", api.NodeUpdate{LabelAdd: map[string]string{"k": "held"}})
	}()
	follower.raft.setLeader("m3", false)
	want(t, <-done, http.StatusOK)
	if got := silent.count("/v1/nodes/w1/update"); got != 0 {
		t.Errorf("the silent leader got %d writes, want none", got)
	}
	// Reads are sent to it all the same: resending them is harmless.
	follower.raft.setLeader("m1", false)
	want(t, follower.asNode("w1", api.RoleWorker).do("GET", "/v1/session/assignments?since=0", nil), http.StatusOK)
	if got := silent.count("/v1/session/assignments"); got != 1 {
		t.Errorf("the silent leader got %d reads, want 1", got)
	}
}
