package manager

import (
	"context"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/shoal-dev/shoal/api"
	"github.com/shoal-dev/shoal/clock"
	"github.com/shoal-dev/shoal/manager/allocator"
	"github.com/shoal-dev/shoal/manager/orchestrator"
	"github.com/shoal-dev/shoal/store"
)

func TestSchedulerWaitsForNetworkAllocation(t *testing.T) {
	clk := clock.NewFake(time.Unix(1000, 0))
	logger := slog.New(slog.DiscardHandler)
	st := store.New(clk, logger)
	m := &Manager{cfg: Config{Clock: clk}, log: logger, store: st, sched: newSchedulerMetrics(nil)}
	ctx := context.Background()
	update := func(fn func(tx *store.Tx) error) {
		t.Helper()
		if err := st.Update(ctx, fn); err != nil {
			t.Fatal(err)
		}
	}
	update(func(tx *store.Tx) error {
		for _, err := range []error{
			tx.PutNode(&api.Node{ID: "n1", Spec: api.NodeSpec{Role: api.RoleWorker, Availability: api.AvailabilityActive},
				Status:      api.NodeStatus{State: api.NodeStateReady},
				Description: api.NodeDescription{CPUs: 2, MemoryBytes: 1 << 30, Engine: api.Engine{Available: true}}}),
			tx.PutNetwork(&api.Network{ID: "net1", Spec: api.NetworkSpec{Name: "appnet", Subnet: "10.10.0.0/24"}, VNI: 4097}),
			tx.PutService(&api.Service{ID: "s1", Spec: api.ServiceSpec{Name: "api", Mode: api.ModeReplicated, Replicas: 2, Networks: []string{"net1"}}}),
			tx.PutService(&api.Service{ID: "s2", Spec: api.ServiceSpec{Name: "plain", Mode: api.ModeReplicated, Replicas: 1}}),
			tx.PutTask(&api.Task{ID: "t1", ServiceID: "s1", Slot: 1, DesiredState: api.TaskRunning, Status: api.TaskStatus{State: api.TaskPending}}),
			tx.PutTask(&api.Task{ID: "t2", ServiceID: "s2", Slot: 1, DesiredState: api.TaskRunning, Status: api.TaskStatus{State: api.TaskPending}}),
		} {
			if err != nil {
				return err
			}
		}
		return nil
	})
	task := func(id string) *api.Task {
		var out *api.Task
		st.View(func(tx store.ReadTx) { out = tx.Task(id) })
		return out
	}

	m.schedulePending(ctx)
	if got := task("t1").Status; got.State != api.TaskPending || got.Message != "waiting for network allocation" {
		t.Errorf("got t1 %s %q, want pending and waiting for network allocation", got.State, got.Message)
	}
	if got := task("t2").Status.State; got != api.TaskAssigned {
		t.Errorf("got t2 %s, want assigned: it needs no network", got)
	}
	index := st.Index()
	m.schedulePending(ctx)
	if st.Index() != index {
		t.Error("a second pass wrote the same wait again")
	}

	update(func(tx *store.Tx) error {
		tk := tx.Task("t1")
		tk.Networks = []api.NetworkAttachment{{NetworkID: "net1", Addr: "10.10.0.2/24", MAC: "02:42:0a:0a:00:02"}}
		return tx.PutTask(tk)
	})
	m.schedulePending(ctx)
	if got := task("t1"); got.Status.State != api.TaskAssigned || got.NodeID != "n1" {
		t.Errorf("got t1 %s on %q, want assigned to n1 once attached", got.Status.State, got.NodeID)
	}
}

// TestServiceTasksGetAddressesThenNodes runs the orchestrator, the allocator
// and the scheduler together on a store without raft.
func TestServiceTasksGetAddressesThenNodes(t *testing.T) {
	clk := clock.NewFake(time.Unix(1000, 0))
	logger := slog.New(slog.DiscardHandler)
	st := store.New(clk, logger)
	m := &Manager{cfg: Config{Clock: clk}, log: logger, store: st, sched: newSchedulerMetrics(nil)}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() { cancel(); wg.Wait() })
	orch := orchestrator.New(orchestrator.Config{Store: st, Clock: clk, Logger: logger})
	alloc := allocator.New(allocator.Config{Store: st, Clock: clk, Logger: logger})
	for _, run := range []func(context.Context){m.runScheduler, orch.Run, alloc.Run} {
		wg.Add(1)
		go func() { defer wg.Done(); run(ctx) }()
	}

	appnet, err := allocator.NewNetwork("net1", api.NetworkSpec{Name: "appnet"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	ingress, err := allocator.NewNetwork("ing", allocator.IngressSpec(), []*api.Network{appnet})
	if err != nil {
		t.Fatal(err)
	}
	err = st.Update(ctx, func(tx *store.Tx) error {
		for _, err := range []error{
			tx.PutNode(&api.Node{ID: "n1", Spec: api.NodeSpec{Role: api.RoleWorker, Availability: api.AvailabilityActive},
				Status:      api.NodeStatus{State: api.NodeStateReady},
				Description: api.NodeDescription{CPUs: 2, MemoryBytes: 1 << 30, Engine: api.Engine{Available: true}}}),
			tx.PutNetwork(appnet),
			tx.PutNetwork(ingress),
			tx.PutService(&api.Service{ID: "s1", Spec: api.ServiceSpec{Name: "web", Mode: api.ModeReplicated, Replicas: 3,
				Task:     api.TaskSpec{Image: "busybox", Restart: api.RestartPolicy{Condition: api.RestartAny}},
				Networks: []string{"net1"},
				Endpoint: api.EndpointSpec{Mode: api.EndpointVIP, Ports: []api.PortConfig{{Published: 8080, Target: 80, Protocol: "tcp"}}}}}),
		} {
			if err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}

	deadline := time.Now().Add(10 * time.Second)
	for {
		var tasks []*api.Task
		var svc *api.Service
		st.View(func(tx store.ReadTx) { tasks, svc = tx.Tasks(), tx.Service("s1") })
		assigned := 0
		seen := map[string]bool{}
		for _, v := range svc.Endpoint.VIPs {
			seen[v.Addr] = true
		}
		for _, tk := range tasks {
			if tk.Status.State != api.TaskAssigned {
				continue
			}
			if len(tk.Networks) != 2 || tk.Networks[0].NetworkID != "ing" || tk.Networks[1].NetworkID != "net1" {
				t.Fatalf("task %s assigned with attachments %+v, want ingress then appnet", tk.ID, tk.Networks)
			}
			for _, a := range tk.Networks {
				if seen[a.Addr] {
					t.Fatalf("address %s given twice", a.Addr)
				}
				seen[a.Addr] = true
			}
			assigned++
		}
		if assigned == 3 && len(svc.Endpoint.VIPs) == 2 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("got %d tasks assigned and VIPs %+v, want 3 and 2 VIPs", assigned, svc.Endpoint.VIPs)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
