package scheduler

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/shoal-dev/shoal/api"
)

// benchCluster builds a cluster of n nodes with about two running tasks
// each, and tasks pending tasks: one global service (a task pinned to each
// node) and replicated services of 100 tasks, half of them with
// reservations or constraints.
func benchCluster(n, tasks int) ([]*api.Node, []*api.Task, []*api.Task) {
	rng := rand.New(rand.NewPCG(1, 2))
	id := func() string { return fmt.Sprintf("%025x", rng.Uint64()) }
	nodes := make([]*api.Node, n)
	for i := range nodes {
		nd := &api.Node{
			ID: id(),
			Spec: api.NodeSpec{Role: api.RoleWorker, Availability: api.AvailabilityActive, Labels: map[string]string{
				"zone": string(rune('a' + rng.IntN(4))),
				"rack": fmt.Sprintf("r%d", rng.IntN(40)),
			}},
			Status: api.NodeStatus{State: api.NodeStateReady},
			Description: api.NodeDescription{Hostname: fmt.Sprintf("host-%05d", i), OS: "linux", Arch: "amd64",
				CPUs: []int{8, 16, 32}[rng.IntN(3)], MemoryBytes: []int64{16, 32, 64}[rng.IntN(3)] * gib},
		}
		switch p := rng.IntN(100); {
		case p < 5:
			nd.Spec.Role = api.RoleManager
		case p < 7:
			nd.Spec.Availability = api.AvailabilityDrain
		case p < 8:
			nd.Spec.Availability = api.AvailabilityPause
		case p < 10:
			nd.Status.State = api.NodeStateDown
		}
		if rng.IntN(10) < 3 {
			nd.Spec.Labels["disk"] = "ssd"
		}
		nodes[i] = nd
	}
	existing := make([]*api.Task, 0, 2*n)
	for i := range 2 * n {
		existing = append(existing, runningTask(id(), fmt.Sprintf("old%d", i%50), nodes[rng.IntN(n)].ID,
			api.ResourceAmounts{NanoCPUs: 250e6, MemoryBytes: 256 * mib}))
	}

	pending := make([]*api.Task, 0, tasks)
	global := api.TaskSpec{Image: "agent", Resources: api.Resources{Reservations: api.ResourceAmounts{NanoCPUs: 100e6, MemoryBytes: 64 * mib}}}
	for _, nd := range nodes {
		pending = append(pending, &api.Task{ID: id(), ServiceID: "global", NodeID: nd.ID, Spec: global,
			Status: api.TaskStatus{State: api.TaskPending}})
	}
	for svc := 0; len(pending) < tasks; svc++ {
		spec := api.TaskSpec{Image: "app"}
		switch svc % 20 {
		case 0, 1, 2, 3, 4: // reservations
			spec.Resources.Reservations = api.ResourceAmounts{NanoCPUs: 250e6, MemoryBytes: 256 * mib}
		case 5, 6, 7: // a zone, with reservations
			spec.Resources.Reservations = api.ResourceAmounts{NanoCPUs: 500e6, MemoryBytes: 512 * mib}
			spec.Placement.Constraints = []string{"node.labels.zone==" + string(rune('a'+svc%4))}
		case 8, 9: // workers with SSDs
			spec.Placement.Constraints = []string{"node.role!=manager", "node.labels.disk==ssd"}
		}
		sid := id()
		for slot := 1; slot <= 100 && len(pending) < tasks; slot++ {
			pending = append(pending, &api.Task{ID: id(), ServiceID: sid, Slot: uint64(slot), Spec: spec,
				Status: api.TaskStatus{State: api.TaskPending}})
		}
	}
	return nodes, existing, pending
}

func BenchmarkSchedule(b *testing.B) {
	for _, size := range []struct{ nodes, tasks int }{{1000, 10000}, {5000, 50000}} {
		b.Run(fmt.Sprintf("nodes=%d,tasks=%d", size.nodes, size.tasks), func(b *testing.B) {
			nodes, existing, pending := benchCluster(size.nodes, size.tasks)
			var build time.Duration
			var placed int
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				b.StopTimer()
				start := time.Now()
				s := NewSnapshot(nodes, existing)
				build += time.Since(start)
				b.StartTimer()
				r := Schedule(s, pending)
				placed = len(r.Decisions)
			}
			b.StopTimer()
			sched := b.Elapsed()
			b.ReportMetric(float64(len(pending)*b.N)/sched.Seconds(), "tasks/s")
			b.ReportMetric(float64(len(pending)*b.N)/(sched+build).Seconds(), "tasks/s-with-snapshot")
			b.ReportMetric(float64(placed)/float64(len(pending)), "placed-ratio")
		})
	}
}
