package manager

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/shoal-dev/shoal/api"
	"github.com/shoal-dev/shoal/clock"
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
