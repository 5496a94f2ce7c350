package orchestrator

import (
	"context"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/shoal-dev/shoal/api"
	"github.com/shoal-dev/shoal/clock"
	"github.com/shoal-dev/shoal/store"
)

type harness struct {
	st  *store.Store
	clk *clock.Fake
	reg *prometheus.Registry
}

// start runs an orchestrator on a real store without a proposer, with nodes
// n1 and n2 ready and active; it stops when the test ends.
func start(t *testing.T) *harness {
	t.Helper()
	clk := clock.NewFake(t0)
	logger := slog.New(slog.DiscardHandler)
	h := &harness{st: store.New(clk, logger), clk: clk, reg: prometheus.NewRegistry()}
	h.update(t, func(tx *store.Tx) error {
		for _, id := range []string{"n1", "n2"} {
			if err := tx.PutNode(node(id, api.NodeStateReady, api.AvailabilityActive)); err != nil {
				return err
			}
		}
		return nil
	})
	o := New(Config{Store: h.st, Clock: clk, Logger: logger, Registry: h.reg})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); o.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	return h
}

func (h *harness) update(t *testing.T, fn func(tx *store.Tx) error) {
	t.Helper()
	if err := h.st.Update(context.Background(), fn); err != nil {
		t.Fatalf("update: %v", err)
	}
}

// changeTask applies fn to a stored task.
func (h *harness) changeTask(t *testing.T, id string, fn func(*api.Task)) {
	t.Helper()
	h.update(t, func(tx *store.Tx) error {
		task := tx.Task(id)
		if task == nil {
			return fmt.Errorf("task %s: %w", id, store.ErrNotFound)
		}
		fn(task)
		return tx.PutTask(task)
	})
}

func (h *harness) tasks(serviceID string) []*api.Task {
	var out []*api.Task
	h.st.View(func(tx store.ReadTx) { out = tx.TasksOfService(serviceID) })
	return out
}

// eventually polls cond until it holds, advancing the fake clock by step
// each round (0: not at all).
func (h *harness) eventually(t *testing.T, what string, step time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		if step > 0 {
			h.clk.Advance(step)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func occupyingBySlot(tasks []*api.Task) map[uint64][]*api.Task {
	out := make(map[uint64][]*api.Task)
	for _, t := range tasks {
		if occupies(t) {
			out[t.Slot] = append(out[t.Slot], t)
		}
	}
	return out
}

func counterValue(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
		m := f.GetMetric()[0]
		if c := m.GetCounter(); c != nil {
			return c.GetValue()
		}
		return float64(m.GetHistogram().GetSampleCount())
	}
	t.Fatalf("metric %s not registered", name)
	return 0
}

func TestRunReplicatedLifecycle(t *testing.T) {
	h := start(t)
	svc := service(api.ModeReplicated, 3)
	svc.Meta = api.Meta{}
	h.update(t, func(tx *store.Tx) error { return tx.PutService(svc) })

	h.eventually(t, "three pending tasks", 0, func() bool {
		slots := occupyingBySlot(h.tasks(svc.ID))
		for s := uint64(1); s <= 3; s++ {
			if len(slots[s]) != 1 || slots[s][0].Status.State != api.TaskPending || slots[s][0].NodeID != "" {
				return false
			}
		}
		return len(slots) == 3
	})

	// Play scheduler and agent: slots 1 and 2 run on n1, slot 3 on n2.
	first := occupyingBySlot(h.tasks(svc.ID))
	for s, ts := range first {
		nodeID := "n1"
		if s == 3 {
			nodeID = "n2"
		}
		h.changeTask(t, ts[0].ID, func(task *api.Task) {
			task.NodeID = nodeID
			task.Status = api.TaskStatus{State: api.TaskRunning, Timestamp: h.clk.Now()}
		})
	}

	h.update(t, func(tx *store.Tx) error {
		n := tx.Node("n1")
		n.Status.State = api.NodeStateDown
		return tx.PutNode(n)
	})
	h.eventually(t, "replacements for the tasks on n1", 0, func() bool {
		tasks := h.tasks(svc.ID)
		for _, task := range tasks {
			if task.NodeID == "n1" && (task.DesiredState != api.TaskShutdown || task.Status.Message != MsgNodeDown) {
				return false
			}
		}
		slots := occupyingBySlot(tasks)
		return len(tasks) == 5 && len(slots) == 3 &&
			len(slots[1]) == 1 && slots[1][0].NodeID == "" &&
			len(slots[2]) == 1 && slots[2][0].NodeID == "" &&
			len(slots[3]) == 1 && slots[3][0].ID == first[3][0].ID
	})

	h.update(t, func(tx *store.Tx) error { return tx.DeleteService(svc.ID) })
	h.eventually(t, "tasks of the deleted service shut down or deleted", 0, func() bool {
		tasks := h.tasks(svc.ID)
		return len(tasks) == 1 && tasks[0].ID == first[3][0].ID && tasks[0].DesiredState == api.TaskShutdown
	})
	h.changeTask(t, first[3][0].ID, func(task *api.Task) {
		task.Status = api.TaskStatus{State: api.TaskShutdown, Timestamp: h.clk.Now()}
	})
	h.eventually(t, "the last task deleted", 0, func() bool { return len(h.tasks(svc.ID)) == 0 })

	if got := counterValue(t, h.reg, "shoal_orchestrator_tasks_created_total"); got != 5 {
		t.Errorf("tasks created: got %v, want 5", got)
	}
	if got := counterValue(t, h.reg, "shoal_orchestrator_reconcile_duration_seconds"); got == 0 {
		t.Errorf("reconcile passes observed: got %v, want some", got)
	}
}

func TestRunDelayedRestart(t *testing.T) {
	h := start(t)
	const delay = 10 * time.Second
	svc := service(api.ModeReplicated, 1, restart(api.RestartAny, delay, 0))
	svc.Meta = api.Meta{}
	h.update(t, func(tx *store.Tx) error { return tx.PutService(svc) })

	var firstID string
	h.eventually(t, "the first task", 0, func() bool {
		ts := h.tasks(svc.ID)
		if len(ts) == 1 {
			firstID = ts[0].ID
		}
		return len(ts) == 1
	})
	failedAt := h.clk.Now()
	h.changeTask(t, firstID, func(task *api.Task) {
		task.NodeID = "n1"
		task.Status = api.TaskStatus{State: api.TaskFailed, Timestamp: failedAt, ExitCode: 1}
	})

	var replacement *api.Task
	h.eventually(t, "a replacement after the delay", time.Second, func() bool {
		for _, task := range h.tasks(svc.ID) {
			if task.ID != firstID {
				replacement = task
			}
		}
		return replacement != nil
	})
	if created := replacement.Status.Timestamp; created.Before(failedAt.Add(delay)) {
		t.Errorf("replacement created at %v, want at or after %v", created, failedAt.Add(delay))
	}
	if replacement.Slot != 1 {
		t.Errorf("replacement slot: got %d, want 1", replacement.Slot)
	}
	h.eventually(t, "the failed task shut down", 0, func() bool {
		var old *api.Task
		h.st.View(func(tx store.ReadTx) { old = tx.Task(firstID) })
		return old != nil && old.DesiredState == api.TaskShutdown
	})
}

func TestRunGlobalNodeJoins(t *testing.T) {
	h := start(t)
	svc := service(api.ModeGlobal, 0)
	svc.Meta = api.Meta{}
	h.update(t, func(tx *store.Tx) error { return tx.PutService(svc) })
	onNodes := func(want ...string) func() bool {
		return func() bool {
			got := map[string]bool{}
			for _, task := range h.tasks(svc.ID) {
				if occupies(task) {
					got[task.NodeID] = true
				}
			}
			for _, n := range want {
				if !got[n] {
					return false
				}
			}
			return len(got) == len(want)
		}
	}
	h.eventually(t, "a task on n1 and n2", 0, onNodes("n1", "n2"))
	h.update(t, func(tx *store.Tx) error { return tx.PutNode(node("n3", api.NodeStateReady, api.AvailabilityActive)) })
	h.eventually(t, "a task on n3 too", 0, onNodes("n1", "n2", "n3"))
	h.update(t, func(tx *store.Tx) error {
		n := tx.Node("n2")
		n.Spec.Availability = api.AvailabilityDrain
		return tx.PutNode(n)
	})
	h.eventually(t, "n2's task shut down", 0, onNodes("n1", "n3"))
}

// TestRunRollingUpdateNewLeader drives a rolling update (parallelism 1) on
// the real store, stops the orchestrator half-way and lets a second one (a
// new leader) finish it from what the store holds.
func TestRunRollingUpdateNewLeader(t *testing.T) {
	clk := clock.NewFake(t0)
	logger := slog.New(slog.DiscardHandler)
	h := &harness{st: store.New(clk, logger), clk: clk, reg: prometheus.NewRegistry()}
	h.update(t, func(tx *store.Tx) error { return tx.PutNode(node("n1", api.NodeStateReady, api.AvailabilityActive)) })
	run := func() (stop func()) {
		o := New(Config{Store: h.st, Clock: clk, Logger: logger})
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { defer close(done); o.Run(ctx) }()
		return func() { cancel(); <-done }
	}
	stop := run()
	defer func() { stop() }()

	svc := service(api.ModeReplicated, 3)
	svc.Meta = api.Meta{}
	svc.Spec.Update = &api.UpdateConfig{Parallelism: 1, Monitor: 5 * time.Second, FailureAction: api.ActionPause, Order: api.OrderStopFirst}
	h.update(t, func(tx *store.Tx) error { return tx.PutService(svc) })
	// runAll plays the scheduler and the agent: every task that should run
	// runs; every task told to stop has stopped.
	runAll := func() {
		for _, task := range h.tasks(svc.ID) {
			switch {
			case task.DesiredState == api.TaskRunning && task.Status.State != api.TaskRunning:
				h.changeTask(t, task.ID, func(x *api.Task) {
					x.NodeID = "n1"
					x.Status = api.TaskStatus{State: api.TaskRunning, Timestamp: clk.Now()}
				})
			case task.DesiredState == api.TaskShutdown && !task.Status.State.Terminal():
				h.changeTask(t, task.ID, func(x *api.Task) { x.Status = api.TaskStatus{State: api.TaskShutdown, Timestamp: clk.Now()} })
			}
		}
	}
	onImage := func(image string) (running, total int) {
		for _, task := range h.tasks(svc.ID) {
			if task.Spec.Image == image && task.DesiredState == api.TaskRunning {
				total++
				if task.Status.State == api.TaskRunning {
					running++
				}
			}
		}
		return running, total
	}
	h.eventually(t, "three tasks", 0, func() bool { _, n := onImage("busybox"); return n == 3 })
	runAll()

	h.update(t, func(tx *store.Tx) error {
		s := tx.Service(svc.ID)
		prev := s.Spec
		s.PreviousSpec = &prev
		s.Spec.Task.Image = "busybox:2"
		return tx.PutService(s)
	})
	for want := 1; want <= 3; want++ {
		h.eventually(t, fmt.Sprintf("%d task(s) of the new spec", want), 0, func() bool {
			_, n := onImage("busybox:2")
			return n == want
		})
		if _, n := onImage("busybox:2"); n != want {
			t.Fatalf("tasks of the new spec: got %d, want %d (parallelism 1)", n, want)
		}
		runAll()
		if want == 2 {
			stop()
			stop = run() // a new leader
		}
	}
	runAll()
	var st *api.UpdateStatus
	h.eventually(t, "the update completed", time.Second, func() bool {
		h.st.View(func(tx store.ReadTx) { st = tx.Service(svc.ID).UpdateStatus })
		return st != nil && st.State == api.UpdateCompleted
	})
	if r, n := onImage("busybox:2"); r != 3 || n != 3 {
		t.Errorf("new tasks running: got %d of %d, want 3 of 3", r, n)
	}
	if st.CompletedAt.Sub(st.StartedAt) < 5*time.Second {
		t.Errorf("completed %v after the start, want at least the 5s monitor window", st.CompletedAt.Sub(st.StartedAt))
	}
}
