package scheduler

import (
	"fmt"
	"reflect"
	"testing"

	"github.com/shoal-dev/shoal/api"
)

func spread(labels ...string) []api.PlacementPreference {
	var ps []api.PlacementPreference
	for _, l := range labels {
		ps = append(ps, api.PlacementPreference{Spread: "node.labels." + l})
	}
	return ps
}

func zoned(id, zone string) *api.Node {
	if zone == "" {
		return testNode(id)
	}
	return testNode(id, withLabel("zone", zone))
}

// startingTask is a task of svc assigned to node and not running yet.
func startingTask(id, svc, node string) *api.Task {
	t := runningTask(id, svc, node, api.ResourceAmounts{})
	t.Status.State = api.TaskAssigned
	return t
}

func TestSchedulePreferencesAndMaxReplicas(t *testing.T) {
	tests := []struct {
		name      string
		nodes     []*api.Node
		existing  []*api.Task
		placement api.Placement
		spec      func(*api.TaskSpec)
		n         int
		// byLabel counts the placed tasks by the value of this node label
		// ("-" for nodes without it); empty: by node.
		byLabel  string
		want     map[string]int
		unplaced int
		reason   string
	}{
		{
			name:      "zones a,a,b: 6 split 3/3 by zone",
			nodes:     []*api.Node{zoned("n1", "a"), zoned("n2", "a"), zoned("n3", "b")},
			placement: api.Placement{Preferences: spread("zone")},
			n:         6, byLabel: "zone",
			want: map[string]int{"a": 3, "b": 3},
		},
		{
			name:      "zones a,a,b: per node 2/1/3",
			nodes:     []*api.Node{zoned("n1", "a"), zoned("n2", "a"), zoned("n3", "b")},
			placement: api.Placement{Preferences: spread("zone")},
			n:         6,
			want:      map[string]int{"n1": 2, "n2": 1, "n3": 3},
		},
		{
			name:      "nodes without the label are a group of their own",
			nodes:     []*api.Node{zoned("n1", "a"), zoned("n2", "b"), zoned("n3", ""), zoned("n4", "")},
			placement: api.Placement{Preferences: spread("zone")},
			n:         6, byLabel: "zone",
			want: map[string]int{"a": 2, "b": 2, "-": 2},
		},
		{
			name:      "no node has the label: as without preferences",
			nodes:     []*api.Node{zoned("n1", ""), zoned("n2", ""), zoned("n3", "")},
			placement: api.Placement{Preferences: spread("zone")},
			n:         6,
			want:      map[string]int{"n1": 2, "n2": 2, "n3": 2},
		},
		{
			name:  "existing tasks count: the emptier zone catches up",
			nodes: []*api.Node{zoned("n1", "a"), zoned("n2", "a"), zoned("n3", "b")},
			existing: []*api.Task{runningTask("w1", "web", "n1", api.ResourceAmounts{}),
				runningTask("w2", "web", "n2", api.ResourceAmounts{}), runningTask("o1", "other", "n3", api.ResourceAmounts{})},
			placement: api.Placement{Preferences: spread("zone")},
			n:         4, byLabel: "zone",
			want: map[string]int{"a": 1, "b": 3}, // ends 3/3
		},
		{
			name: "nested: zone first, then rack within each zone",
			nodes: []*api.Node{
				testNode("n1", withLabel("zone", "a"), withLabel("rack", "1")),
				testNode("n2", withLabel("zone", "a"), withLabel("rack", "1")),
				testNode("n3", withLabel("zone", "a"), withLabel("rack", "2")),
				testNode("n4", withLabel("zone", "b"), withLabel("rack", "3")),
			},
			placement: api.Placement{Preferences: spread("zone", "rack")},
			n:         8,
			want:      map[string]int{"n1": 1, "n2": 1, "n3": 2, "n4": 4},
		},
		{
			name:      "a zone no node of which is eligible gets nothing: its share goes to the others",
			nodes:     []*api.Node{zoned("n1", "a"), zoned("n2", "b"), testNode("n3", withLabel("zone", "c"), withAvailability(api.AvailabilityDrain))},
			placement: api.Placement{Preferences: spread("zone")},
			n:         6, byLabel: "zone",
			want: map[string]int{"a": 3, "b": 3},
		},
		{
			name:      "a zone that runs out of memory overflows to the others",
			nodes:     []*api.Node{testNode("n1", withLabel("zone", "a"), withResources(4, 1*gib)), zoned("n2", "b")},
			placement: api.Placement{Preferences: spread("zone")},
			spec:      func(s *api.TaskSpec) { s.Resources.Reservations.MemoryBytes = 512 * mib },
			n:         6, byLabel: "zone",
			want: map[string]int{"a": 2, "b": 4},
		},
		{
			name:      "constraints first: spread over the eligible nodes' zones",
			nodes:     []*api.Node{zoned("n1", "a"), zoned("n2", "b"), testNode("n3", withLabel("zone", "c"), func(n *api.Node) { n.Spec.Role = api.RoleManager })},
			placement: api.Placement{Preferences: spread("zone"), Constraints: []string{"node.role==worker"}},
			n:         4, byLabel: "zone",
			want: map[string]int{"a": 2, "b": 2},
		},
		{
			name:      "max replicas per node: the rest unplaced, explained",
			nodes:     []*api.Node{testNode("n1"), testNode("n2"), testNode("n3")},
			placement: api.Placement{MaxReplicas: 2},
			n:         8,
			want:      map[string]int{"n1": 2, "n2": 2, "n3": 2},
			unplaced:  2, reason: "no suitable node (max replicas per node (2) reached on 3 nodes)",
		},
		{
			name:      "max replicas counts existing tasks of the service only",
			nodes:     []*api.Node{testNode("n1"), testNode("n2")},
			existing:  []*api.Task{runningTask("w1", "web", "n1", api.ResourceAmounts{}), runningTask("o1", "other", "n2", api.ResourceAmounts{})},
			placement: api.Placement{MaxReplicas: 1},
			n:         2,
			want:      map[string]int{"n2": 1},
			unplaced:  1, reason: "no suitable node (max replicas per node (1) reached on 2 nodes)",
		},
		{
			name:      "max replicas with other reasons",
			nodes:     []*api.Node{testNode("n1"), testNode("n2", withState(api.NodeStateDown))},
			placement: api.Placement{MaxReplicas: 1},
			n:         2,
			want:      map[string]int{"n1": 1},
			unplaced:  1, reason: "no suitable node (1 node not ready; max replicas per node (1) reached on 1 node)",
		},
		{
			name:      "max replicas with preferences: the full zone overflows",
			nodes:     []*api.Node{zoned("n1", "a"), zoned("n2", "b"), zoned("n3", "b")},
			placement: api.Placement{Preferences: spread("zone"), MaxReplicas: 1},
			n:         4, byLabel: "zone",
			want:     map[string]int{"a": 1, "b": 2},
			unplaced: 1, reason: "no suitable node (max replicas per node (1) reached on 3 nodes)",
		},
		{
			name:  "a zone whose node only waits for its tasks to start keeps its share",
			nodes: []*api.Node{zoned("n1", "a"), zoned("n2", "b")},
			existing: func() []*api.Task {
				var ts []*api.Task
				for i := range MaxStarting {
					ts = append(ts, startingTask(fmt.Sprintf("s%d", i), "other", "n1"))
				}
				return ts
			}(),
			placement: api.Placement{Preferences: spread("zone")},
			n:         4, byLabel: "zone",
			want:     map[string]int{"b": 2},
			unplaced: 2, reason: "no suitable node (node.labels.zone=a: 1 node has 16 tasks starting (the most per node; more go once those run))",
		},
		{
			name: "nested: the waiting reason names the branch at every level",
			nodes: []*api.Node{testNode("n1", withLabel("zone", "a"), withLabel("rack", "1")),
				testNode("n2", withLabel("zone", "b"))},
			existing: func() []*api.Task {
				var ts []*api.Task
				for i := range MaxStarting {
					ts = append(ts, startingTask(fmt.Sprintf("s%d", i), "other", "n1"))
				}
				return ts
			}(),
			placement: api.Placement{Preferences: spread("zone", "rack")},
			n:         2,
			want:      map[string]int{"n2": 1},
			unplaced:  1, reason: "no suitable node (node.labels.zone=a, node.labels.rack=1: 1 node has 16 tasks starting (the most per node; more go once those run))",
		},
		{
			name:      "no eligible node: the pipeline explains",
			nodes:     []*api.Node{testNode("n1", withState(api.NodeStateDown))},
			placement: api.Placement{Preferences: spread("zone")},
			n:         1,
			want:      map[string]int{},
			unplaced:  1, reason: "no suitable node (1 node not ready)",
		},
		{
			name:  "the nodes without the label, named in a reason",
			nodes: []*api.Node{testNode("n1"), zoned("n2", "b")},
			existing: func() []*api.Task {
				var ts []*api.Task
				for i := range MaxStarting {
					ts = append(ts, startingTask(fmt.Sprintf("s%d", i), "other", "n1"))
				}
				return ts
			}(),
			placement: api.Placement{Preferences: spread("zone")},
			n:         2,
			want:      map[string]int{"n2": 1},
			unplaced:  1, reason: "no suitable node (without node.labels.zone: 1 node has 16 tasks starting (the most per node; more go once those run))",
		},
		{
			name:      "bad spread descriptor",
			nodes:     []*api.Node{testNode("n1")},
			placement: api.Placement{Preferences: []api.PlacementPreference{{Spread: "foo"}}},
			n:         1,
			want:      map[string]int{},
			unplaced:  1, reason: `spread descriptor "foo": want node.labels.NAME, like node.labels.zone`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			spec := api.TaskSpec{Placement: tt.placement}
			if tt.spec != nil {
				tt.spec(&spec)
			}
			s := NewSnapshot(tt.nodes, tt.existing)
			r := Schedule(s, pendingTasks("web", tt.n, spec))
			got := perNode(r)
			if tt.byLabel != "" {
				byValue := map[string]int{}
				for id, c := range got {
					v := s.Node(id).Node.Spec.Labels[tt.byLabel]
					if v == "" {
						v = "-"
					}
					byValue[v] += c
				}
				got = byValue
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("placed %v, want %v", got, tt.want)
			}
			if len(r.Unplaced) != tt.unplaced {
				t.Fatalf("got %d unplaced (%v), want %d", len(r.Unplaced), r.Unplaced, tt.unplaced)
			}
			for _, u := range r.Unplaced {
				if u.Reason != tt.reason {
					t.Errorf("reason %q, want %q", u.Reason, tt.reason)
				}
			}
		})
	}
}

// A second batch on the same snapshot sees the first: spreading over
// several passes ends as even as one pass.
func TestSchedulePreferencesAcrossBatches(t *testing.T) {
	s := NewSnapshot([]*api.Node{zoned("n1", "a"), zoned("n2", "a"), zoned("n3", "b")}, nil)
	spec := api.TaskSpec{Placement: api.Placement{Preferences: spread("zone")}}
	all := pendingTasks("web", 6, spec)
	byZone := map[string]int{}
	for _, batch := range [][]*api.Task{all[:1], all[1:2], all[2:5], all[5:]} {
		for _, d := range Schedule(s, batch).Decisions {
			byZone[s.Node(d.NodeID).Node.Spec.Labels["zone"]]++
		}
	}
	if want := map[string]int{"a": 3, "b": 3}; !reflect.DeepEqual(byZone, want) {
		t.Errorf("got %v, want %v", byZone, want)
	}
}

// Tasks of one service that differ in preferences or cap (a rolling
// update) are placed each under their own.
func TestScheduleGroupsByPlacementPreferences(t *testing.T) {
	s := NewSnapshot([]*api.Node{testNode("n1"), testNode("n2")}, nil)
	capped := pendingTasks("web", 2, api.TaskSpec{Placement: api.Placement{MaxReplicas: 1}})
	free := pendingTasks("web", 2, api.TaskSpec{})
	free[0].ID, free[1].ID = "free1", "free2"
	r := Schedule(s, append(capped, free...))
	if len(r.Decisions) != 4 || len(r.Unplaced) != 0 {
		t.Fatalf("got %v, unplaced %v; want all 4 placed", r.Decisions, r.Unplaced)
	}
}

// BenchmarkSchedulePreferences is BenchmarkSchedule's cluster with every
// replicated service spread over zone (4 values) then rack (40), and half
// of them capped at 2 tasks per node.
func BenchmarkSchedulePreferences(b *testing.B) {
	nodes, existing, pending := benchCluster(1000, 10000)
	for i, t := range pending {
		if t.NodeID != "" {
			continue
		}
		t.Spec.Placement.Preferences = spread("zone", "rack")
		if i%2 == 0 {
			t.Spec.Placement.MaxReplicas = 2
		}
	}
	var placed int
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		b.StopTimer()
		s := NewSnapshot(nodes, existing)
		b.StartTimer()
		placed = len(Schedule(s, pending).Decisions)
	}
	b.StopTimer()
	b.ReportMetric(float64(len(pending)*b.N)/b.Elapsed().Seconds(), "tasks/s")
	b.ReportMetric(float64(placed)/float64(len(pending)), "placed-ratio")
}

// A node that both waits for its tasks to start and holds a host port the
// task needs will never take it: its zone does not keep a share.
func TestSchedulePreferencesWaitingNodeWithHostPort(t *testing.T) {
	port := api.PortConfig{Published: 80, Target: 80, PublishMode: api.PublishHost}
	var existing []*api.Task
	for i := range MaxStarting {
		existing = append(existing, startingTask(fmt.Sprintf("s%d", i), "other", "n1"))
	}
	existing[0].HostPorts = []api.PortConfig{port}
	s := NewSnapshot([]*api.Node{zoned("n1", "a"), zoned("n2", "b"), zoned("n3", "b")}, existing)
	pending := pendingTasks("web", 2, api.TaskSpec{Placement: api.Placement{Preferences: spread("zone")}})
	for _, tk := range pending {
		tk.HostPorts = []api.PortConfig{port}
	}
	r := Schedule(s, pending)
	if got, want := perNode(r), map[string]int{"n2": 1, "n3": 1}; !reflect.DeepEqual(got, want) || len(r.Unplaced) != 0 {
		t.Errorf("placed %v (unplaced %v), want %v: zone a can never take the port", got, r.Unplaced, want)
	}
}
