package manager

import (
	"context"
	"fmt"
	"log/slog"
	"testing"

	"github.com/shoal-dev/shoal/api"
	"github.com/shoal-dev/shoal/clock"
	"github.com/shoal-dev/shoal/store"
)

// BenchmarkStoreScope measures scheduling over the scope of swarmkit's
// BenchmarkScheduler (manager/scheduler, v2.0.0): nodes in a store, pending
// tasks created in the store, the scheduling loop running on store events,
// and the clock stopped once every task's assignment is committed and seen
// by a watcher. Like swarmkit's, the store has no raft underneath; unlike
// swarmkit's, ours still encodes and applies each change set as raft would
// (the FSM path), which is part of what is measured. scripts/bench-scheduler.sh
// compares it with swarmkit's built and run in the same session.
func BenchmarkStoreScope(b *testing.B) {
	for _, size := range []struct{ nodes, tasks int }{{1000, 1000}, {1000, 10000}} {
		b.Run(fmt.Sprintf("nodes=%d,tasks=%d", size.nodes, size.tasks), func(b *testing.B) {
			b.StopTimer()
			for range b.N {
				benchStoreScope(b, size.nodes, size.tasks)
			}
			b.ReportMetric(float64(size.tasks)*float64(b.N)/b.Elapsed().Seconds(), "tasks/s")
		})
	}
}

func benchStoreScope(b *testing.B, nodes, tasks int) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	logger := slog.New(slog.DiscardHandler)
	st := store.New(clock.Real{}, logger)
	m := &Manager{cfg: Config{Clock: clock.Real{}}, log: logger, store: st, sched: newSchedulerMetrics(nil)}
	ids := make([]int, nodes)
	for i := range ids {
		ids[i] = i
	}
	err := store.UpdateEach(ctx, st, ids, func(tx *store.Tx, i int) error {
		return tx.PutNode(&api.Node{
			ID:          fmt.Sprintf("node%05d", i),
			Spec:        api.NodeSpec{Role: api.RoleWorker, Availability: api.AvailabilityActive, Labels: map[string]string{}},
			Status:      api.NodeStatus{State: api.NodeStateReady},
			Description: api.NodeDescription{Hostname: fmt.Sprintf("name%d", i), CPUs: 8, MemoryBytes: 16 << 30, Engine: api.Engine{Available: true}},
		})
	})
	if err != nil {
		b.Fatal(err)
	}
	events, stop := st.Watch()
	defer stop()
	done := make(chan struct{})
	go func() {
		defer close(done)
		m.runScheduler(ctx)
	}()

	taskIDs := make([]int, tasks)
	for i := range taskIDs {
		taskIDs[i] = i
	}
	b.StartTimer()
	err = store.UpdateEach(ctx, st, taskIDs, func(tx *store.Tx, i int) error {
		id := fmt.Sprintf("task%d", i)
		return tx.PutTask(&api.Task{ID: id, ServiceID: "svc", ServiceName: id, Slot: uint64(i + 1),
			DesiredState: api.TaskRunning, Status: api.TaskStatus{State: api.TaskPending}})
	})
	if err != nil {
		b.Fatal(err)
	}
	assigned := 0
	for assigned < tasks {
		ev := <-events
		if ev.Dropped > 0 || ev.Reset {
			b.Fatal("watcher fell behind")
		}
		for _, c := range ev.Changes {
			if c.Kind == store.KindTask && c.Op == store.OpUpdate {
				assigned++
			}
		}
	}
	b.StopTimer()
	cancel()
	<-done
	var unassigned int
	st.View(func(tx store.ReadTx) {
		for _, t := range tx.Tasks() {
			if t.Status.State != api.TaskAssigned {
				unassigned++
			}
		}
	})
	if unassigned > 0 {
		b.Fatalf("%d tasks not assigned", unassigned)
	}
}

// BenchmarkIdlePass is one scheduling pass with nothing to do: 1k nodes and
// 10k running tasks, the cost the leader pays on every task or node event.
func BenchmarkIdlePass(b *testing.B) {
	ctx := context.Background()
	logger := slog.New(slog.DiscardHandler)
	st := store.New(clock.Real{}, logger)
	m := &Manager{cfg: Config{Clock: clock.Real{}}, log: logger, store: st, sched: newSchedulerMetrics(nil)}
	for n := range 1000 {
		err := st.Update(ctx, func(tx *store.Tx) error {
			if err := tx.PutNode(&api.Node{ID: fmt.Sprintf("node%05d", n),
				Spec:        api.NodeSpec{Role: api.RoleWorker, Availability: api.AvailabilityActive},
				Status:      api.NodeStatus{State: api.NodeStateReady},
				Description: api.NodeDescription{CPUs: 8, MemoryBytes: 16 << 30, Engine: api.Engine{Available: true}}}); err != nil {
				return err
			}
			for i := range 10 {
				if err := tx.PutTask(&api.Task{ID: fmt.Sprintf("task%05d-%d", n, i), ServiceID: "svc", NodeID: fmt.Sprintf("node%05d", n),
					DesiredState: api.TaskRunning, Spec: api.TaskSpec{Image: "registry:5000/app:1", Command: []string{"sleep", "1d"}},
					Status: api.TaskStatus{State: api.TaskRunning, ContainerID: "c0123456789abcdef"}}); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			b.Fatal(err)
		}
	}
	b.ResetTimer()
	for b.Loop() {
		m.schedulePending(ctx)
	}
}
