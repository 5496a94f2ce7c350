package manager

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/shoal-dev/shoal/api"
	"github.com/shoal-dev/shoal/manager/allocator"
	"github.com/shoal-dev/shoal/manager/scheduler"
	"github.com/shoal-dev/shoal/store"
)

type schedulerMetrics struct {
	placements    prometheus.Counter
	unschedulable prometheus.Gauge
	decision      prometheus.Histogram
}

func newSchedulerMetrics(reg prometheus.Registerer) *schedulerMetrics {
	m := &schedulerMetrics{
		placements: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "shoal_scheduler_placements_total", Help: "Tasks assigned to nodes by the scheduler.",
		}),
		unschedulable: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "shoal_scheduler_unschedulable_tasks", Help: "Pending tasks no node can take, as of the last pass.",
		}),
		decision: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "shoal_scheduler_decision_duration_seconds", Help: "Time to compute one scheduling pass.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 4, 10),
		}),
	}
	if reg != nil {
		reg.MustRegister(m.placements, m.unschedulable, m.decision)
	}
	return m
}

// runScheduler places pending tasks whenever the store changes, until ctx ends.
func (m *Manager) runScheduler(ctx context.Context) {
	events, cancel := m.store.Watch()
	defer cancel()
	tick, stop := m.cfg.Clock.NewTicker(time.Second)
	defer stop()
	for {
		start := time.Now()
		m.schedulePending(ctx)
		// Let a burst of writes land before the next pass.
		if !store.WaitFor(ctx, events, tick, store.Paced(10*time.Millisecond, time.Since(start)), store.KindTask, store.KindNode) {
			return
		}
	}
}

func (m *Manager) schedulePending(ctx context.Context) {
	var tasks, waiting, pending, unallocated []*api.Task
	var nodeList []*api.Node
	var nets *allocator.Index
	m.store.View(func(tx store.ReadTx) {
		// Nothing pending, nothing to read: the common case of a pass.
		if waiting = tx.PendingTasks(); len(waiting) == 0 {
			return
		}
		nodeList = tx.Nodes()
		tasks = tx.Tasks()
		nets = allocator.NewIndex(tx.Networks(), tx.Services())
	})
	for _, t := range waiting {
		if !nets.Ready(t) {
			unallocated = append(unallocated, t)
			continue
		}
		pending = append(pending, t)
	}
	m.markUnallocated(ctx, unallocated)
	if len(pending) == 0 {
		m.sched.unschedulable.Set(0)
		return
	}
	// A node whose engine is not connected cannot run tasks: to the
	// scheduler it is not ready.
	for _, n := range nodeList {
		if !n.Description.Engine.Available && n.Status.State == api.NodeStateReady {
			n.Status.State = api.NodeStateUnknown
		}
	}
	start := time.Now()
	res := scheduler.Schedule(scheduler.NewSnapshot(nodeList, tasks), pending)
	m.sched.decision.Observe(time.Since(start).Seconds())
	m.sched.unschedulable.Set(float64(len(res.Unplaced)))

	now := m.cfg.Clock.Now()
	placed := make(map[string]bool, len(res.Decisions)) // a retried batch counts once
	err := store.UpdateEach(ctx, m.store, res.Decisions, func(tx *store.Tx, d scheduler.Decision) error {
		t := tx.Task(d.TaskID)
		if t == nil || t.Status.State != api.TaskPending || t.DesiredState != api.TaskRunning {
			return nil // changed since the snapshot; the next pass sees it
		}
		t.NodeID = d.NodeID
		t.Status = api.TaskStatus{State: api.TaskAssigned, Timestamp: now, Message: "scheduler assigned task to node"}
		placed[t.ID] = true
		return tx.PutTask(t)
	})
	m.sched.placements.Add(float64(len(placed)))
	if err != nil {
		m.log.Warn("write placements", "err", err)
		return
	}
	if len(res.Unplaced) == 0 {
		return
	}
	err = store.UpdateEach(ctx, m.store, res.Unplaced, func(tx *store.Tx, u scheduler.Unplaced) error {
		t := tx.Task(u.TaskID)
		if t == nil || t.Status.State != api.TaskPending || t.Status.Err == u.Reason {
			return nil
		}
		t.Status.Err = u.Reason
		t.Status.Message = "no suitable node"
		t.Status.Timestamp = now
		return tx.PutTask(t)
	})
	if err != nil {
		m.log.Warn("write unschedulable reasons", "err", err)
	}
}

// msgWaitingForNetwork is the status message of a pending task whose
// network attachments the allocator has not written yet.
const msgWaitingForNetwork = "waiting for network allocation"

// markUnallocated tells the user why pending tasks are not scheduled yet.
func (m *Manager) markUnallocated(ctx context.Context, tasks []*api.Task) {
	var ids []string
	for _, t := range tasks {
		if t.Status.Message != msgWaitingForNetwork {
			ids = append(ids, t.ID)
		}
	}
	if len(ids) == 0 {
		return
	}
	now := m.cfg.Clock.Now()
	err := store.UpdateEach(ctx, m.store, ids, func(tx *store.Tx, id string) error {
		t := tx.Task(id)
		if t == nil || t.Status.State != api.TaskPending || t.Status.Message == msgWaitingForNetwork {
			return nil
		}
		t.Status.Message = msgWaitingForNetwork
		t.Status.Timestamp = now
		return tx.PutTask(t)
	})
	if err != nil {
		m.log.Warn("write network allocation waits", "err", err)
	}
}
