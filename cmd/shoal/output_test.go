package main

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/shoal-dev/shoal/api"
	"github.com/shoal-dev/shoal/node"
)

func testNodes() []api.NodeView {
	mk := func(id, host string, role api.NodeRole, state api.NodeState, av api.Availability, ms, addr string, eng api.Engine) api.NodeView {
		var n api.NodeView
		n.ID = id
		n.Description.Hostname = host
		n.Spec.Role = role
		n.Spec.Availability = av
		n.Status.State = state
		n.Status.Addr = addr
		n.Description.Engine = eng
		n.ManagerStatus = ms
		return n
	}
	ctrd := api.Engine{Name: "containerd", Version: "1.7.24", Available: true}
	return []api.NodeView{
		mk("wrk2", "worker-2", api.RoleWorker, api.NodeStateDown, api.AvailabilityDrain, "", "10.0.0.3", api.Engine{Name: "containerd"}),
		mk("mgr1", "manager-1", api.RoleManager, api.NodeStateReady, api.AvailabilityActive, api.ManagerLeader, "10.0.0.1", ctrd),
		mk("wrk1", "worker-1", api.RoleWorker, api.NodeStateReady, api.AvailabilityPause, "", "10.0.0.2", ctrd),
	}
}

func TestWriteNodeTable(t *testing.T) {
	nodes := testNodes()
	sortNodes(nodes)
	var b strings.Builder
	if err := writeNodeTable(&b, nodes, "wrk1"); err != nil {
		t.Fatal(err)
	}
	want := "" +
		"ID       HOSTNAME    STATUS   AVAILABILITY   MANAGER STATUS   ADDRESS    ENGINE\n" +
		"mgr1     manager-1   Ready    Active         Leader           10.0.0.1   containerd 1.7.24\n" +
		"wrk1 *   worker-1    Ready    Pause                           10.0.0.2   containerd 1.7.24\n" +
		"wrk2     worker-2    Down     Drain                           10.0.0.3   containerd (unavailable)\n"
	if got := b.String(); got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
}

func TestWriteNodeTableEmpty(t *testing.T) {
	var b strings.Builder
	if err := writeNodeTable(&b, nil, ""); err != nil {
		t.Fatal(err)
	}
	if got, want := b.String(), "ID   HOSTNAME   STATUS   AVAILABILITY   MANAGER STATUS   ADDRESS   ENGINE\n"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}

func TestWriteNodeIDs(t *testing.T) {
	nodes := testNodes()
	sortNodes(nodes)
	var b strings.Builder
	if err := writeNodeIDs(&b, nodes); err != nil {
		t.Fatal(err)
	}
	if got, want := b.String(), "mgr1\nwrk1\nwrk2\n"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}

func TestWriteJSONRoundTrip(t *testing.T) {
	nodes := testNodes()
	var b strings.Builder
	if err := writeJSON(&b, nodes); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(b.String(), "[\n    {\n") || !strings.HasSuffix(b.String(), "]\n") {
		t.Errorf("got %q, want an indented JSON array", b.String())
	}
	var got []api.NodeView
	if err := json.Unmarshal([]byte(b.String()), &got); err != nil {
		t.Fatalf("decode: %v", err)
	}
	if !reflect.DeepEqual(got, nodes) {
		t.Errorf("got %+v, want %+v", got, nodes)
	}
}

func TestEngineString(t *testing.T) {
	tests := []struct {
		e    api.Engine
		want string
	}{
		{api.Engine{Name: "containerd", Version: "1.7.24", Available: true}, "containerd 1.7.24"},
		{api.Engine{Name: "containerd", Available: true}, "containerd"},
		{api.Engine{Name: "containerd", Version: "1.7.24"}, "containerd 1.7.24 (unavailable)"},
		{api.Engine{}, "unavailable"},
		{api.Engine{Available: true}, "-"},
	}
	for _, tt := range tests {
		if got := engineString(tt.e); got != tt.want {
			t.Errorf("engineString(%+v): got %q, want %q", tt.e, got, tt.want)
		}
	}
}

func TestWriteReady(t *testing.T) {
	tests := []struct {
		name string
		mode node.Mode
		info node.ReadyInfo
		want string
	}{
		{
			name: "new cluster",
			mode: node.ModeInit,
			info: node.ReadyInfo{NodeID: "n1", Role: "manager", APIAddr: "10.0.0.1:2377", SocketPath: "/d/shoal.sock"},
			want: "Cluster initialized: node n1 is now a manager.\n\n" +
				"To add a worker or a manager, get its join command on this node (it holds a secret,\n" +
				"so it is not printed here):\n\n" +
				"    shoal --data-dir /d join-token worker\n    shoal --data-dir /d join-token manager\n\n" +
				"Serving on unix:///d/shoal.sock\n",
		},
		{
			name: "resumed init",
			mode: node.ModeInit,
			info: node.ReadyInfo{NodeID: "n1", Role: "manager", Resumed: true, SocketPath: "/d/shoal.sock"},
			want: "Resumed node n1 (manager) from /d\nServing on unix:///d/shoal.sock\n",
		},
		{
			name: "agent",
			mode: node.ModeResume,
			info: node.ReadyInfo{NodeID: "n2", Role: "worker", Resumed: true, SocketPath: "/d/shoal.sock"},
			want: "Resumed node n2 (worker) from /d\nServing on unix:///d/shoal.sock\n",
		},
		{
			name: "joined",
			mode: node.ModeJoin,
			info: node.ReadyInfo{NodeID: "n3", ClusterID: "c1", Role: "worker", SocketPath: "/d/shoal.sock"},
			want: "Node n3 joined cluster c1 as a worker.\n\nServing on unix:///d/shoal.sock\n",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var b strings.Builder
			writeReady(&b, tt.mode, "/d", tt.info)
			if got := b.String(); got != tt.want {
				t.Errorf("got\n%s\nwant\n%s", got, tt.want)
			}
		})
	}
}

func TestWriteInfo(t *testing.T) {
	info := api.Info{
		NodeID: "n1", ClusterID: "c1", Role: api.RoleManager, Addr: "10.0.0.1", IsLeader: true,
		Endpoints: api.Endpoints{API: "10.0.0.1:2377", Gossip: "10.0.0.1:7946"},
		Engine:    api.Engine{Name: "containerd", Error: "dial: no such file"},
	}
	var b strings.Builder
	if err := writeInfo(&b, info); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"Node ID:      n1\n", "Leader:       n1 (this node)\n", "API:          10.0.0.1:2377\n",
		"Raft:         -\n", "Engine:       containerd (unavailable)\n", "Engine error: dial: no such file\n",
	} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("got\n%s\nwant a line %q", b.String(), want)
		}
	}
}

func TestNodeUpdate(t *testing.T) {
	tests := []struct {
		name    string
		av      string
		add, rm []string
		want    api.NodeUpdate
		wantErr string
	}{
		{name: "drain", av: "drain", want: api.NodeUpdate{Availability: api.AvailabilityDrain}},
		{
			name: "labels", add: []string{"zone=a", "ssd=", "k=v=w"}, rm: []string{"old"},
			want: api.NodeUpdate{LabelAdd: map[string]string{"zone": "a", "ssd": "", "k": "v=w"}, LabelRm: []string{"old"}},
		},
		{name: "bad availability", av: "paused", wantErr: `--availability "paused": want active, pause or drain`},
		{name: "label without =", add: []string{"zone"}, wantErr: `--label-add "zone": want KEY=VALUE`},
		{name: "label without key", add: []string{"=a"}, wantErr: `--label-add "=a": want KEY=VALUE`},
		{name: "empty label-rm", rm: []string{""}, wantErr: `--label-rm "": want a label KEY`},
		{name: "added and removed", add: []string{"a=1"}, rm: []string{"a"}, wantErr: `label "a" is both added and removed`},
		{name: "nothing", wantErr: "nothing to update"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := nodeUpdate(tt.av, tt.add, tt.rm)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("got error %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestJoinAddr(t *testing.T) {
	tests := []struct {
		in, want string
		wantErr  bool
	}{
		{in: "10.0.0.1", want: "10.0.0.1:2377"},
		{in: "10.0.0.1:3000", want: "10.0.0.1:3000"},
		{in: "manager-1", want: "manager-1:2377"},
		{in: "::1", want: "[::1]:2377"},
		{in: "[fd00::1]", want: "[fd00::1]:2377"},
		{in: "[fd00::1]:3000", want: "[fd00::1]:3000"},
		{in: "", wantErr: true},
		{in: "10.0.0.1:", wantErr: true},
		{in: "10.0.0.1:http", wantErr: true},
		{in: "10.0.0.1:70000", wantErr: true},
		{in: ":2377", wantErr: true},
		{in: "tcp://10.0.0.1", wantErr: true},
	}
	for _, tt := range tests {
		got, err := joinAddr(tt.in)
		if tt.wantErr {
			if err == nil {
				t.Errorf("joinAddr(%q): got %q, want an error", tt.in, got)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("joinAddr(%q): got %q, %v, want %q", tt.in, got, err, tt.want)
		}
	}
}

func TestCurrentState(t *testing.T) {
	tests := []struct {
		state api.TaskState
		age   time.Duration
		want  string
	}{
		{api.TaskRunning, 0, "Running less than a second ago"},
		{api.TaskRunning, -3 * time.Second, "Running less than a second ago"}, // a skewed clock
		{api.TaskRunning, 1500 * time.Millisecond, "Running 1 second ago"},
		{api.TaskPreparing, 59 * time.Second, "Preparing 59 seconds ago"},
		{api.TaskFailed, 61 * time.Second, "Failed about a minute ago"},
		{api.TaskShutdown, 45 * time.Minute, "Shutdown 45 minutes ago"},
		{api.TaskComplete, 70 * time.Minute, "Complete about an hour ago"},
		{api.TaskRunning, 5 * time.Hour, "Running 5 hours ago"},
		{api.TaskRunning, 72 * time.Hour, "Running 3 days ago"},
		{api.TaskRunning, 21 * 24 * time.Hour, "Running 3 weeks ago"},
		{api.TaskRunning, 90 * 24 * time.Hour, "Running 3 months ago"},
		{api.TaskRunning, 3 * 365 * 24 * time.Hour, "Running 3 years ago"},
	}
	for _, tt := range tests {
		s := api.TaskStatus{State: tt.state, Timestamp: testNow.Add(-tt.age)}
		if got := currentState(s, testNow); got != tt.want {
			t.Errorf("currentState(%s, %v old): got %q, want %q", tt.state, tt.age, got, tt.want)
		}
	}
	if got, want := currentState(api.TaskStatus{State: api.TaskNew}, testNow), "New"; got != want {
		t.Errorf("without a timestamp: got %q, want %q", got, want)
	}
	if got, want := currentState(api.TaskStatus{State: api.TaskStarting, Health: api.HealthStarting}, testNow), "Starting (health: starting)"; got != want {
		t.Errorf("with health: got %q, want %q", got, want)
	}
}

func TestEllipsis(t *testing.T) {
	tests := []struct {
		in   string
		n    int
		want string
	}{
		{"short", 30, "short"},
		{"exactly ten", 11, "exactly ten"},
		{"exactly ten", 10, "exactly t…"},
		{"héllo wörld", 6, "héllo…"},
	}
	for _, tt := range tests {
		if got := ellipsis(tt.in, tt.n); got != tt.want {
			t.Errorf("ellipsis(%q, %d): got %q, want %q", tt.in, tt.n, got, tt.want)
		}
	}
}

func TestWriteTaskTableEmpty(t *testing.T) {
	var b strings.Builder
	if err := writeTaskTable(&b, nil, nil, testNow, true); err != nil {
		t.Fatal(err)
	}
	if got, want := b.String(), "ID   NAME   IMAGE   NODE   DESIRED STATE   CURRENT STATE   ERROR\n"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}

func TestSortTasksKeepsSlotHistory(t *testing.T) {
	// Out of order across slots and services, newest first within each slot.
	mk := func(id, svc string, slot uint64, node string) *api.Task {
		return &api.Task{ID: id, ServiceID: svc + "-id", ServiceName: svc, Slot: slot, NodeID: node}
	}
	tasks := []*api.Task{
		mk("w2", "web", 2, "n1"), mk("g-b", "agent", 0, "nb"), mk("w1-new", "web", 1, "n1"),
		mk("g-a", "agent", 0, "na"), mk("w1-old", "web", 1, "n2"), mk("w2-old", "web", 2, "n1"),
	}
	sortTasks(tasks)
	var got []string
	for _, t := range tasks {
		got = append(got, t.ID)
	}
	if want := []string{"g-a", "g-b", "w1-new", "w1-old", "w2", "w2-old"}; !reflect.DeepEqual(got, want) {
		t.Errorf("got %q, want %q", got, want)
	}
}
