package scheduler

import (
	"fmt"
	"testing"

	"github.com/shoal-dev/shoal/api"
)

const (
	mib = int64(1) << 20
	gib = int64(1) << 30
)

// testNode is a ready, active worker with 4 CPUs and 4 GiB.
func testNode(id string, mods ...func(*api.Node)) *api.Node {
	n := &api.Node{
		ID:          id,
		Spec:        api.NodeSpec{Role: api.RoleWorker, Availability: api.AvailabilityActive, Labels: map[string]string{}},
		Status:      api.NodeStatus{State: api.NodeStateReady},
		Description: api.NodeDescription{Hostname: "host-" + id, OS: "linux", Arch: "amd64", CPUs: 4, MemoryBytes: 4 * gib},
	}
	for _, m := range mods {
		m(n)
	}
	return n
}

func withState(s api.NodeState) func(*api.Node) {
	return func(n *api.Node) { n.Status.State = s }
}

func withAvailability(a api.Availability) func(*api.Node) {
	return func(n *api.Node) { n.Spec.Availability = a }
}

func withLabel(k, v string) func(*api.Node) {
	return func(n *api.Node) { n.Spec.Labels[k] = v }
}

func withResources(cpus int, mem int64) func(*api.Node) {
	return func(n *api.Node) { n.Description.CPUs, n.Description.MemoryBytes = cpus, mem }
}

func mustConstraint(t *testing.T, expr string) Constraint {
	t.Helper()
	c, err := ParseConstraint(expr)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestFilters(t *testing.T) {
	// A node with 1.5 CPUs and 1 GiB reserved by a running task.
	running := &api.Task{ID: "r", ServiceID: "s", NodeID: "n", Status: api.TaskStatus{State: api.TaskRunning},
		Spec: api.TaskSpec{Resources: api.Resources{Reservations: api.ResourceAmounts{NanoCPUs: 1.5e9, MemoryBytes: gib}}}}
	busy := NewNodeInfo(testNode("n"), []*api.Task{running})

	tests := []struct {
		name    string
		filter  Filter
		node    NodeInfo
		want    bool
		explain map[int]string
	}{
		{"ready passes", ReadyFilter{}, NewNodeInfo(testNode("n"), nil), true,
			map[int]string{1: "1 node not ready", 3: "3 nodes not ready"}},
		{"down fails ready", ReadyFilter{}, NewNodeInfo(testNode("n", withState(api.NodeStateDown)), nil), false, nil},
		{"unknown fails ready", ReadyFilter{}, NewNodeInfo(testNode("n", withState(api.NodeStateUnknown)), nil), false, nil},
		{"nil node fails ready", ReadyFilter{}, NodeInfo{}, false, nil},
		{"active passes", AvailabilityFilter{}, NewNodeInfo(testNode("n"), nil), true,
			map[int]string{1: "1 node not available for new tasks", 2: "2 nodes not available for new tasks"}},
		{"pause fails", AvailabilityFilter{}, NewNodeInfo(testNode("n", withAvailability(api.AvailabilityPause)), nil), false, nil},
		{"drain fails", AvailabilityFilter{}, NewNodeInfo(testNode("n", withAvailability(api.AvailabilityDrain)), nil), false, nil},
		{"constraint holds", ConstraintFilter{mustConstraint(t, "node.labels.zone==a")}, NewNodeInfo(testNode("n", withLabel("zone", "a")), nil), true,
			map[int]string{1: "1 node fails constraint node.labels.zone==a", 3: "3 nodes fail constraint node.labels.zone==a"}},
		{"constraint fails", ConstraintFilter{mustConstraint(t, "node.labels.zone==a")}, NewNodeInfo(testNode("n", withLabel("zone", "b")), nil), false, nil},
		{"missing label fails ==", ConstraintFilter{mustConstraint(t, "node.labels.zone==a")}, NewNodeInfo(testNode("n"), nil), false, nil},
		{"missing label passes !=", ConstraintFilter{mustConstraint(t, "node.labels.zone!=a")}, NewNodeInfo(testNode("n"), nil), true, nil},
		{"cpu fits exactly", CPUFilter{NanoCPUs: 2.5e9}, busy, true,
			map[int]string{1: "1 node lacks CPU: needs 2.5 CPUs", 2: "2 nodes lack CPU: needs 2.5 CPUs"}},
		{"cpu short", CPUFilter{NanoCPUs: 2.6e9}, busy, false, map[int]string{1: "1 node lacks CPU: needs 2.6 CPUs"}},
		{"one cpu", CPUFilter{NanoCPUs: 1e9}, busy, true, map[int]string{1: "1 node lacks CPU: needs 1 CPU"}},
		{"no cpu asked", CPUFilter{}, NewNodeInfo(testNode("n", withResources(0, 0)), nil), true, nil},
		{"memory fits exactly", MemoryFilter{MemoryBytes: 3 * gib}, busy, true,
			map[int]string{1: "1 node lacks memory: needs 3 GiB", 4: "4 nodes lack memory: needs 3 GiB"}},
		{"memory short", MemoryFilter{MemoryBytes: 3*gib + 1}, busy, false, map[int]string{1: "1 node lacks memory: needs 3221225473 bytes"}},
		{"memory in MiB", MemoryFilter{MemoryBytes: 512 * mib}, busy, true, map[int]string{2: "2 nodes lack memory: needs 512 MiB"}},
		{"no memory asked", MemoryFilter{}, NewNodeInfo(testNode("n", withResources(0, 0)), nil), true, nil},
		{"starting below the cap", StartingFilter{Max: 2}, NewNodeInfo(testNode("n"), startingTasks("n", 1)), true,
			map[int]string{
				1: "1 node has 2 tasks starting (the most per node; more go once those run)",
				3: "3 nodes have 2 tasks starting (the most per node; more go once those run)",
			}},
		{"starting at the cap", StartingFilter{Max: 2}, NewNodeInfo(testNode("n"), startingTasks("n", 2)), false, nil},
		{"running tasks do not count", StartingFilter{Max: 1}, busy, true, nil},
		{"no cap", StartingFilter{}, NewNodeInfo(testNode("n"), startingTasks("n", 50)), true, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.filter.Check(&tt.node); got != tt.want {
				t.Errorf("Check: got %v, want %v", got, tt.want)
			}
			for n, want := range tt.explain {
				if got := tt.filter.Explain(n); got != want {
					t.Errorf("Explain(%d): got %q, want %q", n, got, want)
				}
			}
		})
	}
}

// startingTasks returns n tasks assigned to node and not running yet, in
// each of the states before running.
func startingTasks(node string, n int) []*api.Task {
	states := []api.TaskState{api.TaskAssigned, api.TaskAccepted, api.TaskPreparing, api.TaskStarting}
	ts := make([]*api.Task, n)
	for i := range ts {
		ts[i] = &api.Task{ID: fmt.Sprintf("%s-s%d", node, i), ServiceID: "s", NodeID: node,
			Status: api.TaskStatus{State: states[i%len(states)]}}
	}
	return ts
}

func TestPipelineExplain(t *testing.T) {
	spec := api.TaskSpec{
		Placement: api.Placement{Constraints: []string{"node.labels.zone==a"}},
		Resources: api.Resources{Reservations: api.ResourceAmounts{MemoryBytes: 512 * mib}},
	}
	p, err := NewPipeline(&spec)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := p.Explain(), "no suitable node (no nodes in the cluster)"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
	nodes := []*api.Node{
		testNode("1", withAvailability(api.AvailabilityDrain)),
		testNode("2", withAvailability(api.AvailabilityPause), withState(api.NodeStateReady)),
		testNode("3", withLabel("zone", "a"), withResources(1, 256*mib)),
		testNode("4", withLabel("zone", "b")),
		testNode("5"),
		testNode("6", withLabel("zone", "c")),
		testNode("7", withState(api.NodeStateDown), withAvailability(api.AvailabilityDrain)), // counted once, as not ready
		testNode("8", withLabel("zone", "a")),
	}
	var passed []string
	for _, n := range nodes {
		ni := NewNodeInfo(n, nil)
		if p.Check(&ni) {
			passed = append(passed, n.ID)
		}
	}
	if len(passed) != 1 || passed[0] != "8" {
		t.Errorf("got %v passing, want [8]", passed)
	}
	want := "no suitable node (1 node not ready; 2 nodes not available for new tasks; 3 nodes fail constraint node.labels.zone==a; 1 node lacks memory: needs 512 MiB)"
	if got := p.Explain(); got != want {
		t.Errorf("got %q, want %q", got, want)
	}
	p.Reset()
	if got, want := p.Explain(), "no suitable node (no nodes in the cluster)"; got != want {
		t.Errorf("after Reset: got %q, want %q", got, want)
	}
}

func TestNewPipelineRejectsBadConstraint(t *testing.T) {
	spec := api.TaskSpec{Placement: api.Placement{Constraints: []string{"node.zone==a"}}}
	if _, err := NewPipeline(&spec); err == nil {
		t.Fatal("got nil error, want one for node.zone")
	}
}
