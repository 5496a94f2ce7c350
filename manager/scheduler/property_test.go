package scheduler

import (
	"fmt"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"

	"github.com/shoal-dev/shoal/api"
)

var constraintPool = []string{
	"node.labels.zone==a", "node.labels.zone!=b", "node.labels.disk==ssd",
	"node.role==worker", "node.role!=manager", "node.platform.os==linux",
	"node.platform.arch!=arm64", "node.hostname!=host-n03", "node.id==n05",
}

// randomCluster returns nodes and tasks that never over-reserve a node.
func randomCluster(rng *rand.Rand) ([]*api.Node, []*api.Task) {
	pick := func(p float64) bool { return rng.Float64() < p }
	nodes := make([]*api.Node, 1+rng.IntN(30))
	for i := range nodes {
		n := testNode(fmt.Sprintf("n%02d", i))
		if pick(0.15) {
			n.Status.State = []api.NodeState{api.NodeStateDown, api.NodeStateUnknown}[rng.IntN(2)]
		}
		if pick(0.15) {
			n.Spec.Availability = []api.Availability{api.AvailabilityPause, api.AvailabilityDrain}[rng.IntN(2)]
		}
		if pick(0.2) {
			n.Spec.Role = api.RoleManager
		}
		if pick(0.8) {
			n.Spec.Labels["zone"] = []string{"a", "b", "c"}[rng.IntN(3)]
		}
		if pick(0.3) {
			n.Spec.Labels["disk"] = "ssd"
		}
		if pick(0.2) {
			n.Description.Arch = "arm64"
		}
		if pick(0.1) {
			n.Description.OS = "windows"
		}
		n.Description.CPUs = rng.IntN(9)
		n.Description.MemoryBytes = int64(rng.IntN(9)) * 512 * mib
		nodes[i] = n
	}
	var tasks []*api.Task
	for i := range rng.IntN(60) {
		n := nodes[rng.IntN(len(nodes))]
		res := api.ResourceAmounts{NanoCPUs: int64(rng.IntN(3)) * 250e6, MemoryBytes: int64(rng.IntN(3)) * 256 * mib}
		t := runningTask(fmt.Sprintf("old%d", i), fmt.Sprintf("s%d", rng.IntN(5)), n.ID, res)
		if pick(0.2) {
			t.Status.State = api.TaskFailed
		}
		tasks = append(tasks, t)
	}
	// Drop tasks that would over-reserve their node.
	var kept []*api.Task
	used := map[string]api.ResourceAmounts{}
	caps := map[string]*api.Node{}
	for _, n := range nodes {
		caps[n.ID] = n
	}
	for _, t := range tasks {
		u, n, r := used[t.NodeID], caps[t.NodeID], t.Spec.Resources.Reservations
		if CountsAgainstNode(t) {
			if u.NanoCPUs+r.NanoCPUs > int64(n.Description.CPUs)*1e9 || u.MemoryBytes+r.MemoryBytes > n.Description.MemoryBytes {
				continue
			}
			used[t.NodeID] = api.ResourceAmounts{NanoCPUs: u.NanoCPUs + r.NanoCPUs, MemoryBytes: u.MemoryBytes + r.MemoryBytes}
		}
		kept = append(kept, t)
	}
	return nodes, kept
}

// randomPending returns pinned tasks first, then each service's tasks
// together, one spec after the other, the order Schedule works in.
func randomPending(rng *rand.Rand, nodes []*api.Node) []*api.Task {
	randomSpec := func() api.TaskSpec {
		spec := reserve(float64(rng.IntN(5))*0.5, int64(rng.IntN(5))*256*mib)
		for range rng.IntN(3) {
			spec.Placement.Constraints = append(spec.Placement.Constraints, constraintPool[rng.IntN(len(constraintPool))])
		}
		if rng.IntN(40) == 0 {
			spec.Placement.Constraints = append(spec.Placement.Constraints, "node.zone==a")
		}
		return spec
	}
	var pending []*api.Task
	for g := range rng.IntN(3) {
		spec := randomSpec()
		for _, n := range nodes {
			if rng.IntN(4) > 0 {
				pending = append(pending, &api.Task{ID: fmt.Sprintf("g%d.%s", g, n.ID), ServiceID: fmt.Sprintf("g%d", g),
					NodeID: n.ID, Spec: spec, Status: api.TaskStatus{State: api.TaskPending}})
			}
		}
	}
	for s := range 1 + rng.IntN(6) {
		for v := range 1 + rng.IntN(2) {
			spec := randomSpec()
			for i := range rng.IntN(25) {
				pending = append(pending, &api.Task{ID: fmt.Sprintf("s%d.v%d.%d", s, v, i), ServiceID: fmt.Sprintf("s%d", s),
					Spec: spec, Status: api.TaskStatus{State: api.TaskPending}})
			}
		}
	}
	return pending
}

// refMatch checks a constraint without the package's parser.
func refMatch(n *api.Node, expr string) (match, valid bool) {
	key, val, eq := strings.Cut(expr, "==")
	if !eq {
		key, val, _ = strings.Cut(expr, "!=")
	}
	var have string
	var ok = true
	switch {
	case key == "node.id":
		have = n.ID
	case key == "node.hostname":
		have = n.Description.Hostname
	case key == "node.role":
		have = string(n.Spec.Role)
	case key == "node.platform.os":
		have = n.Description.OS
	case key == "node.platform.arch":
		have = n.Description.Arch
	case strings.HasPrefix(key, "node.labels."):
		have, ok = n.Spec.Labels[strings.TrimPrefix(key, "node.labels.")]
	default:
		return false, false
	}
	return (ok && have == val) == eq, true
}

// refFits reports whether t may go on n given what is already used there
// and how many tasks are starting there.
func refFits(n *api.Node, used api.ResourceAmounts, starting int, t *api.Task) bool {
	if n.Status.State != api.NodeStateReady || n.Spec.Availability != api.AvailabilityActive || starting >= MaxStarting {
		return false
	}
	for _, c := range t.Spec.Placement.Constraints {
		if m, valid := refMatch(n, c); !m || !valid {
			return false
		}
	}
	r := t.Spec.Resources.Reservations
	if r.NanoCPUs > 0 && used.NanoCPUs+r.NanoCPUs > int64(n.Description.CPUs)*1e9 {
		return false
	}
	if r.MemoryBytes > 0 && used.MemoryBytes+r.MemoryBytes > n.Description.MemoryBytes {
		return false
	}
	return true
}

// naiveSchedule scans every node for every task, in input order.
func naiveSchedule(nodes []*api.Node, existing, pending []*api.Task) map[string]string {
	used := map[string]api.ResourceAmounts{}
	starting := map[string]int{}
	perService := map[[2]string]int{}
	total := map[string]int{}
	add := func(nodeID string, t *api.Task) {
		if t.Status.State.Before(api.TaskRunning) {
			starting[nodeID]++
		}
		r, u := t.Spec.Resources.Reservations, used[nodeID]
		used[nodeID] = api.ResourceAmounts{NanoCPUs: u.NanoCPUs + r.NanoCPUs, MemoryBytes: u.MemoryBytes + r.MemoryBytes}
		perService[[2]string{nodeID, t.ServiceID}]++
		total[nodeID]++
	}
	for _, t := range existing {
		if CountsAgainstNode(t) {
			add(t.NodeID, t)
		}
	}
	out := map[string]string{}
	for _, t := range pending {
		var best *api.Node
		for _, n := range nodes {
			if t.NodeID != "" && n.ID != t.NodeID || !refFits(n, used[n.ID], starting[n.ID], t) {
				continue
			}
			if best == nil {
				best = n
				continue
			}
			a, b := [3]any{perService[[2]string{n.ID, t.ServiceID}], total[n.ID], n.ID}, [3]any{perService[[2]string{best.ID, t.ServiceID}], total[best.ID], best.ID}
			if a[0].(int) < b[0].(int) || a[0] == b[0] && (a[1].(int) < b[1].(int) || a[1] == b[1] && a[2].(string) < b[2].(string)) {
				best = n
			}
		}
		if best != nil {
			add(best.ID, t)
			out[t.ID] = best.ID
		}
	}
	return out
}

func TestScheduleProperties(t *testing.T) {
	for seed := range uint64(500) {
		rng := rand.New(rand.NewPCG(seed, 42))
		nodes, existing := randomCluster(rng)
		pending := randomPending(rng, nodes)
		byID := map[string]*api.Node{}
		for _, n := range nodes {
			byID[n.ID] = n
		}

		s := NewSnapshot(nodes, existing)
		r := Schedule(s, pending)
		fail := func(format string, args ...any) {
			t.Helper()
			t.Fatalf("seed %d: %s", seed, fmt.Sprintf(format, args...))
		}

		// Every task is decided exactly once.
		seen := map[string]bool{}
		for _, d := range r.Decisions {
			if seen[d.TaskID] {
				fail("task %s decided twice", d.TaskID)
			}
			seen[d.TaskID] = true
		}
		for _, u := range r.Unplaced {
			if seen[u.TaskID] {
				fail("task %s decided twice", u.TaskID)
			}
			if u.Reason == "" {
				fail("task %s unplaced without a reason", u.TaskID)
			}
			seen[u.TaskID] = true
		}
		if len(seen) != len(pending) {
			fail("got %d tasks decided, want %d", len(seen), len(pending))
		}

		// Replay the decisions: each fits its node when it is made, so no
		// node ends over-reserved.
		tasks := map[string]*api.Task{}
		for _, p := range pending {
			tasks[p.ID] = p
		}
		used := map[string]api.ResourceAmounts{}
		starting := map[string]int{}
		for _, e := range existing {
			if CountsAgainstNode(e) {
				if e.Status.State.Before(api.TaskRunning) {
					starting[e.NodeID]++
				}
				r, u := e.Spec.Resources.Reservations, used[e.NodeID]
				used[e.NodeID] = api.ResourceAmounts{NanoCPUs: u.NanoCPUs + r.NanoCPUs, MemoryBytes: u.MemoryBytes + r.MemoryBytes}
			}
		}
		for _, d := range r.Decisions {
			task, n := tasks[d.TaskID], byID[d.NodeID]
			if n == nil {
				fail("task %s on unknown node %s", d.TaskID, d.NodeID)
			}
			if task.NodeID != "" && task.NodeID != d.NodeID {
				fail("pinned task %s moved from %s to %s", task.ID, task.NodeID, d.NodeID)
			}
			if !refFits(n, used[n.ID], starting[n.ID], task) {
				fail("task %s (%v, %v) does not fit node %s (%+v, %+v, used %+v)", task.ID,
					task.Spec.Placement.Constraints, task.Spec.Resources.Reservations, n.ID, n.Spec, n.Description, used[n.ID])
			}
			rr, u := task.Spec.Resources.Reservations, used[n.ID]
			starting[n.ID]++
			used[n.ID] = api.ResourceAmounts{NanoCPUs: u.NanoCPUs + rr.NanoCPUs, MemoryBytes: u.MemoryBytes + rr.MemoryBytes}
		}
		for _, n := range nodes {
			u := used[n.ID]
			if u.NanoCPUs > int64(n.Description.CPUs)*1e9 || u.MemoryBytes > n.Description.MemoryBytes {
				fail("node %s over-reserved: %+v of %d CPUs, %d bytes", n.ID, u, n.Description.CPUs, n.Description.MemoryBytes)
			}
			ni := s.Node(n.ID)
			if ni.Starting != starting[n.ID] {
				fail("snapshot node %s has %d tasks starting; replay says %d", n.ID, ni.Starting, starting[n.ID])
			}
			if ni.ReservedNanoCPUs != u.NanoCPUs || ni.ReservedMemoryBytes != u.MemoryBytes {
				fail("snapshot node %s reserves %d, %d; replay says %+v", n.ID, ni.ReservedNanoCPUs, ni.ReservedMemoryBytes, u)
			}
		}

		// An unplaced task fits nowhere, even after the batch (resources
		// only shrink).
		for _, u := range r.Unplaced {
			task := tasks[u.TaskID]
			for _, n := range nodes {
				if (task.NodeID == "" || task.NodeID == n.ID) && refFits(n, used[n.ID], starting[n.ID], task) {
					fail("task %s unplaced (%s) but fits node %s", task.ID, u.Reason, n.ID)
				}
			}
		}

		// The heap picks what a scan of every node picks.
		got := map[string]string{}
		for _, d := range r.Decisions {
			got[d.TaskID] = d.NodeID
		}
		if want := naiveSchedule(nodes, existing, pending); !reflect.DeepEqual(got, want) {
			fail("got %v, want the naive scan's %v", got, want)
		}
	}
}
