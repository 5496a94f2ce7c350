package scheduler

import (
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/shoal-dev/shoal/api"
)

// pendingTasks returns n pending tasks of service svc with the given spec.
func pendingTasks(svc string, n int, spec api.TaskSpec) []*api.Task {
	ts := make([]*api.Task, n)
	for i := range ts {
		ts[i] = &api.Task{
			ID: fmt.Sprintf("%s.%d", svc, i+1), ServiceID: svc, Slot: uint64(i + 1),
			Spec: spec, DesiredState: api.TaskRunning, Status: api.TaskStatus{State: api.TaskPending},
		}
	}
	return ts
}

func runningTask(id, svc, node string, res api.ResourceAmounts) *api.Task {
	return &api.Task{ID: id, ServiceID: svc, NodeID: node, Slot: 1,
		Spec:   api.TaskSpec{Resources: api.Resources{Reservations: res}},
		Status: api.TaskStatus{State: api.TaskRunning}}
}

func reserve(cpus float64, mem int64) api.TaskSpec {
	return api.TaskSpec{Resources: api.Resources{Reservations: api.ResourceAmounts{NanoCPUs: int64(cpus * 1e9), MemoryBytes: mem}}}
}

// perNode counts decisions by node ID.
func perNode(r Result) map[string]int {
	m := map[string]int{}
	for _, d := range r.Decisions {
		m[d.NodeID]++
	}
	return m
}

func TestScheduleSpreads(t *testing.T) {
	s := NewSnapshot([]*api.Node{testNode("c"), testNode("a"), testNode("b")}, nil)
	r := Schedule(s, pendingTasks("web", 6, api.TaskSpec{}))
	if len(r.Unplaced) != 0 {
		t.Fatalf("got unplaced %v, want none", r.Unplaced)
	}
	if got, want := perNode(r), map[string]int{"a": 2, "b": 2, "c": 2}; !reflect.DeepEqual(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}
	// Ties go by node ID, round robin.
	var got []string
	for _, d := range r.Decisions {
		got = append(got, d.NodeID)
	}
	if want := []string{"a", "b", "c", "a", "b", "c"}; !reflect.DeepEqual(got, want) {
		t.Errorf("got order %v, want %v", got, want)
	}
	for _, id := range []string{"a", "b", "c"} {
		if n := s.Node(id); n.ServiceTasks["web"] != 2 || len(n.Tasks) != 2 {
			t.Errorf("node %s: got %d web tasks, %d tasks, want 2 and 2", id, n.ServiceTasks["web"], len(n.Tasks))
		}
	}
}

func TestScheduleCountsExistingTasks(t *testing.T) {
	tests := []struct {
		name     string
		existing []*api.Task
		n        int
		want     map[string]int
	}{
		{
			name:     "same service fills the gaps first",
			existing: []*api.Task{runningTask("w1", "web", "a", api.ResourceAmounts{}), runningTask("w2", "web", "a", api.ResourceAmounts{}), runningTask("w3", "web", "b", api.ResourceAmounts{})},
			n:        3,
			want:     map[string]int{"b": 1, "c": 2}, // ends 2/2/2
		},
		{
			name: "other services break ties",
			existing: []*api.Task{runningTask("x1", "db", "a", api.ResourceAmounts{}), runningTask("x2", "db", "a", api.ResourceAmounts{}),
				runningTask("x3", "db", "b", api.ResourceAmounts{})},
			n:    2,
			want: map[string]int{"c": 1, "b": 1},
		},
		{
			name: "service count beats total count",
			existing: []*api.Task{runningTask("x1", "db", "a", api.ResourceAmounts{}), runningTask("x2", "db", "a", api.ResourceAmounts{}),
				runningTask("x3", "db", "a", api.ResourceAmounts{}), runningTask("w1", "web", "b", api.ResourceAmounts{}), runningTask("w2", "web", "c", api.ResourceAmounts{})},
			n:    1,
			want: map[string]int{"a": 1},
		},
		{
			name: "terminal and unassigned tasks do not count",
			existing: []*api.Task{
				{ID: "d1", ServiceID: "web", NodeID: "a", Status: api.TaskStatus{State: api.TaskFailed}},
				{ID: "d2", ServiceID: "web", NodeID: "a", Status: api.TaskStatus{State: api.TaskShutdown}},
				{ID: "d3", ServiceID: "web", NodeID: "b", Status: api.TaskStatus{State: api.TaskPending}},
				{ID: "d4", ServiceID: "web", NodeID: "c", Status: api.TaskStatus{State: api.TaskAssigned}},
			},
			n:    2,
			want: map[string]int{"a": 1, "b": 1},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := NewSnapshot([]*api.Node{testNode("a"), testNode("b"), testNode("c")}, tt.existing)
			r := Schedule(s, pendingTasks("web", tt.n, api.TaskSpec{}))
			if got := perNode(r); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got %v, want %v", got, tt.want)
			}
		})
	}
}

func TestScheduleResourcesExhaust(t *testing.T) {
	// Each node has 4 CPUs and 4 GiB: tasks of 1 CPU and 1.5 GiB are held
	// back by memory, 1 fits on a (1.5 GiB already reserved), 2 on b.
	s := NewSnapshot([]*api.Node{testNode("a"), testNode("b")},
		[]*api.Task{runningTask("old", "other", "a", api.ResourceAmounts{MemoryBytes: 1536 * mib})})
	r := Schedule(s, pendingTasks("big", 5, reserve(1, 1536*mib)))
	if got, want := perNode(r), map[string]int{"a": 1, "b": 2}; !reflect.DeepEqual(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}
	if len(r.Unplaced) != 2 {
		t.Fatalf("got %d unplaced, want 2: %v", len(r.Unplaced), r.Unplaced)
	}
	want := "no suitable node (2 nodes lack memory: needs 1536 MiB)"
	for _, u := range r.Unplaced {
		if u.Reason != want {
			t.Errorf("task %s: got reason %q, want %q", u.TaskID, u.Reason, want)
		}
	}
	if got, want := []string{r.Unplaced[0].TaskID, r.Unplaced[1].TaskID}, []string{"big.4", "big.5"}; !reflect.DeepEqual(got, want) {
		t.Errorf("got unplaced %v, want %v", got, want)
	}
	for _, id := range []string{"a", "b"} {
		n := s.Node(id)
		if n.AvailableMemoryBytes() < 0 || n.AvailableNanoCPUs() < 0 {
			t.Errorf("node %s over-reserved: %d nano CPUs, %d bytes free", id, n.AvailableNanoCPUs(), n.AvailableMemoryBytes())
		}
	}

	// The next batch sees this one's reservations: 1 GiB is left on each
	// node, so two 512 MiB tasks fit on each; b's CPUs run out as well, and
	// CPU is checked before memory.
	r = Schedule(s, pendingTasks("small", 5, reserve(1, 512*mib)))
	if got, want := perNode(r), map[string]int{"a": 2, "b": 2}; !reflect.DeepEqual(got, want) {
		t.Errorf("second batch: got %v, want %v", got, want)
	}
	wantUnplaced := []Unplaced{{TaskID: "small.5", Reason: "no suitable node (1 node lacks CPU: needs 1 CPU; 1 node lacks memory: needs 512 MiB)"}}
	if !reflect.DeepEqual(r.Unplaced, wantUnplaced) {
		t.Errorf("second batch: got %v, want %v", r.Unplaced, wantUnplaced)
	}
}

func TestScheduleCPUExhaust(t *testing.T) {
	s := NewSnapshot([]*api.Node{testNode("a", withResources(2, 8*gib)), testNode("b", withResources(1, 8*gib))}, nil)
	r := Schedule(s, pendingTasks("cpu", 4, reserve(1, 0)))
	if got, want := perNode(r), map[string]int{"a": 2, "b": 1}; !reflect.DeepEqual(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}
	want := []Unplaced{{TaskID: "cpu.4", Reason: "no suitable node (2 nodes lack CPU: needs 1 CPU)"}}
	if !reflect.DeepEqual(r.Unplaced, want) {
		t.Errorf("got %v, want %v", r.Unplaced, want)
	}
}

func TestScheduleExcludesUnavailableNodes(t *testing.T) {
	nodes := []*api.Node{
		testNode("drained", withAvailability(api.AvailabilityDrain)),
		testNode("paused", withAvailability(api.AvailabilityPause)),
		testNode("down", withState(api.NodeStateDown)),
		testNode("unknown", withState(api.NodeStateUnknown)),
		testNode("ok"),
	}
	s := NewSnapshot(nodes, nil)
	r := Schedule(s, pendingTasks("web", 4, api.TaskSpec{}))
	if got, want := perNode(r), map[string]int{"ok": 4}; !reflect.DeepEqual(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}

	s = NewSnapshot(nodes[:4], nil)
	r = Schedule(s, pendingTasks("web", 1, api.TaskSpec{}))
	want := []Unplaced{{TaskID: "web.1", Reason: "no suitable node (2 nodes not ready; 2 nodes not available for new tasks)"}}
	if len(r.Decisions) != 0 || !reflect.DeepEqual(r.Unplaced, want) {
		t.Errorf("got %v / %v, want no decisions and %v", r.Decisions, r.Unplaced, want)
	}
}

func TestScheduleConstraints(t *testing.T) {
	nodes := []*api.Node{
		testNode("a", withLabel("zone", "a")),
		testNode("b", withLabel("zone", "b")),
		testNode("c", withLabel("zone", "a"), func(n *api.Node) { n.Spec.Role = api.RoleManager }),
		testNode("d"),
	}
	tests := []struct {
		name        string
		constraints []string
		want        map[string]int
		unplaced    string
	}{
		{name: "label", constraints: []string{"node.labels.zone==a"}, want: map[string]int{"a": 2, "c": 2}},
		{name: "label and role", constraints: []string{"node.labels.zone==a", "node.role!=manager"}, want: map[string]int{"a": 4}},
		{name: "missing label passes !=", constraints: []string{"node.labels.zone!=a"}, want: map[string]int{"b": 2, "d": 2}},
		{name: "hostname", constraints: []string{"node.hostname==host-d"}, want: map[string]int{"d": 4}},
		{name: "id", constraints: []string{"node.id!=a", "node.id!=b", "node.id!=c"}, want: map[string]int{"d": 4}},
		{name: "none match", constraints: []string{"node.platform.os==windows"}, want: map[string]int{},
			unplaced: "no suitable node (4 nodes fail constraint node.platform.os==windows)"},
		{name: "invalid", constraints: []string{"node.zone==a"}, want: map[string]int{},
			unplaced: `scheduler: invalid constraint "node.zone==a": unknown key "node.zone" (want node.id, node.hostname, node.role, node.labels.NAME, node.platform.os or node.platform.arch)`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := NewSnapshot(nodes, nil)
			r := Schedule(s, pendingTasks("web", 4, api.TaskSpec{Placement: api.Placement{Constraints: tt.constraints}}))
			if got := perNode(r); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got %v, want %v", got, tt.want)
			}
			for _, u := range r.Unplaced {
				if u.Reason != tt.unplaced {
					t.Errorf("task %s: got reason %q, want %q", u.TaskID, u.Reason, tt.unplaced)
				}
			}
			if tt.unplaced != "" && len(r.Unplaced) != 4 {
				t.Errorf("got %d unplaced, want 4", len(r.Unplaced))
			}
		})
	}
}

func TestScheduleGlobalTasksStayOnTheirNode(t *testing.T) {
	nodes := []*api.Node{
		testNode("a"),
		testNode("b", withAvailability(api.AvailabilityDrain)),
		testNode("c", withResources(4, 256*mib)),
		testNode("d", withLabel("zone", "x")),
	}
	spec := reserve(0.5, 512*mib)
	spec.Placement.Constraints = []string{"node.labels.zone!=y"}
	var pending []*api.Task
	for _, n := range []string{"a", "b", "c", "d", "gone"} {
		pending = append(pending, &api.Task{ID: "g." + n, ServiceID: "agent", NodeID: n, Spec: spec,
			Status: api.TaskStatus{State: api.TaskPending}})
	}
	// Replicated tasks listed first still come after the pinned ones: they
	// see the global task on node a and go elsewhere.
	repl := pendingTasks("web", 1, api.TaskSpec{})
	s := NewSnapshot(nodes, []*api.Task{runningTask("x", "web", "d", api.ResourceAmounts{})})
	r := Schedule(s, append(repl, pending...))

	wantDecisions := []Decision{{TaskID: "web.1", NodeID: "c"}, {TaskID: "g.a", NodeID: "a"}, {TaskID: "g.d", NodeID: "d"}}
	if !reflect.DeepEqual(r.Decisions, wantDecisions) {
		t.Errorf("got %v, want %v", r.Decisions, wantDecisions)
	}
	wantUnplaced := []Unplaced{
		{TaskID: "g.b", Reason: "no suitable node (1 node not available for new tasks)"},
		{TaskID: "g.c", Reason: "no suitable node (1 node lacks memory: needs 512 MiB)"},
		{TaskID: "g.gone", Reason: "no suitable node (node gone not in the cluster)"},
	}
	if !reflect.DeepEqual(r.Unplaced, wantUnplaced) {
		t.Errorf("got %v, want %v", r.Unplaced, wantUnplaced)
	}
}

func TestScheduleIsDeterministic(t *testing.T) {
	build := func() (*Snapshot, []*api.Task) {
		nodes := make([]*api.Node, 50)
		for i := range nodes {
			nodes[i] = testNode(fmt.Sprintf("n%02d", (i*7)%50), withLabel("zone", string(rune('a'+i%3))))
		}
		var pending []*api.Task
		for svc := range 10 {
			spec := reserve(0.25*float64(svc%3), int64(svc%4)*256*mib)
			if svc%2 == 0 {
				spec.Placement.Constraints = []string{"node.labels.zone!=c"}
			}
			pending = append(pending, pendingTasks(fmt.Sprintf("s%d", svc), 37, spec)...)
		}
		return NewSnapshot(nodes, nil), pending
	}
	s1, p1 := build()
	want := Schedule(s1, p1)
	for range 5 {
		s2, p2 := build()
		if got := Schedule(s2, p2); !reflect.DeepEqual(got, want) {
			t.Fatal("two runs on the same input gave different results")
		}
	}
}

func TestScheduleSnapshotLiteral(t *testing.T) {
	// A NodeInfo built by hand is counted from its Tasks.
	existing := runningTask("x", "web", "a", api.ResourceAmounts{MemoryBytes: 3 * gib})
	s := &Snapshot{Nodes: []NodeInfo{
		{Node: testNode("a"), Tasks: map[string]*api.Task{"x": existing}},
		{Node: testNode("b")},
	}}
	r := Schedule(s, pendingTasks("web", 3, reserve(0, gib)))
	if got, want := perNode(r), map[string]int{"a": 1, "b": 2}; !reflect.DeepEqual(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}
	if got := s.Node("a").AvailableMemoryBytes(); got != 0 {
		t.Errorf("node a: got %d bytes free, want 0", got)
	}
}

// A burst goes to the nodes MaxStarting at a time; the rest waits,
// explained, and is placed once tasks run.
func TestScheduleCapsStartingTasks(t *testing.T) {
	tests := []struct {
		name       string
		existing   []*api.Task
		pending    []*api.Task
		wantPlaced map[string]int
		wantReason string
	}{
		{
			name:       "burst on two idle nodes",
			pending:    pendingTasks("web", 40, api.TaskSpec{}),
			wantPlaced: map[string]int{"a": MaxStarting, "b": MaxStarting},
			wantReason: "no suitable node (2 nodes have 16 tasks starting (the most per node; more go once those run))",
		},
		{
			name:       "tasks already starting count",
			existing:   startingTasks("a", MaxStarting-3),
			pending:    pendingTasks("web", 40, api.TaskSpec{}),
			wantPlaced: map[string]int{"a": 3, "b": MaxStarting},
			wantReason: "no suitable node (2 nodes have 16 tasks starting (the most per node; more go once those run))",
		},
		{
			name:       "running tasks do not count",
			existing:   []*api.Task{runningTask("r1", "old", "a", api.ResourceAmounts{}), runningTask("r2", "old", "b", api.ResourceAmounts{})},
			pending:    pendingTasks("web", 20, api.TaskSpec{}),
			wantPlaced: map[string]int{"a": 10, "b": 10},
		},
		{
			name:     "a global task waits for its node",
			existing: startingTasks("a", MaxStarting),
			pending: []*api.Task{{ID: "g1", ServiceID: "agent", NodeID: "a", DesiredState: api.TaskRunning, Status: api.TaskStatus{State: api.TaskPending}},
				{ID: "g2", ServiceID: "agent", NodeID: "b", DesiredState: api.TaskRunning, Status: api.TaskStatus{State: api.TaskPending}}},
			wantPlaced: map[string]int{"b": 1},
			wantReason: "no suitable node (1 node has 16 tasks starting (the most per node; more go once those run))",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := NewSnapshot([]*api.Node{testNode("a"), testNode("b")}, tt.existing)
			r := Schedule(s, tt.pending)
			if got := perNode(r); !reflect.DeepEqual(got, tt.wantPlaced) {
				t.Errorf("placed: got %v, want %v", got, tt.wantPlaced)
			}
			placed := 0
			for _, n := range tt.wantPlaced {
				placed += n
			}
			if got, want := len(r.Unplaced), len(tt.pending)-placed; got != want {
				t.Fatalf("unplaced: got %d, want %d", got, want)
			}
			for _, u := range r.Unplaced {
				if u.Reason != tt.wantReason {
					t.Errorf("reason: got %q, want %q", u.Reason, tt.wantReason)
					break
				}
			}
			// Once the placed tasks run, the next pass places more.
			for i := range s.Nodes {
				for _, tk := range s.Nodes[i].Tasks {
					run := *tk
					run.Status.State = api.TaskRunning
					s.Nodes[i].RemoveTask(tk.ID)
					s.Nodes[i].AddTask(&run)
				}
			}
			var rest []*api.Task
			for _, u := range r.Unplaced {
				for _, p := range tt.pending {
					if p.ID == u.TaskID {
						rest = append(rest, p)
					}
				}
			}
			if r2 := Schedule(s, rest); len(rest) > 0 && len(r2.Decisions) == 0 {
				t.Errorf("second pass after the tasks ran: placed none of %d", len(rest))
			}
		})
	}
}

func TestScheduleEmpty(t *testing.T) {
	r := Schedule(NewSnapshot(nil, nil), pendingTasks("web", 2, api.TaskSpec{}))
	for _, u := range r.Unplaced {
		if !strings.Contains(u.Reason, "no nodes in the cluster") {
			t.Errorf("got %q, want it to say there are no nodes", u.Reason)
		}
	}
	if r = Schedule(NewSnapshot([]*api.Node{testNode("a")}, nil), []*api.Task{nil}); len(r.Decisions)+len(r.Unplaced) != 0 {
		t.Errorf("got %v, want an empty result for a nil task", r)
	}
}

func TestNodeInfoAddRemove(t *testing.T) {
	ni := NewNodeInfo(testNode("a"), nil)
	task := runningTask("t", "web", "a", api.ResourceAmounts{NanoCPUs: 1e9, MemoryBytes: gib})
	if !ni.AddTask(task) || ni.AddTask(task) {
		t.Fatal("AddTask: want true, then false for the same task")
	}
	if ni.ServiceTasks["web"] != 1 || ni.AvailableNanoCPUs() != 3e9 || ni.AvailableMemoryBytes() != 3*gib {
		t.Errorf("got %v web, %d CPU, %d memory free", ni.ServiceTasks["web"], ni.AvailableNanoCPUs(), ni.AvailableMemoryBytes())
	}
	if !ni.RemoveTask("t") || ni.RemoveTask("t") {
		t.Fatal("RemoveTask: want true, then false")
	}
	if len(ni.ServiceTasks) != 0 || ni.AvailableNanoCPUs() != 4e9 || ni.AvailableMemoryBytes() != 4*gib {
		t.Errorf("got %v, %d CPU, %d memory free after removal", ni.ServiceTasks, ni.AvailableNanoCPUs(), ni.AvailableMemoryBytes())
	}
}
