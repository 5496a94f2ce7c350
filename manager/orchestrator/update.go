package orchestrator

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/shoal-dev/shoal/api"
)

// Update status messages, Swarm's where Swarm has one.
const (
	MsgUpdating          = "update in progress"
	MsgUpdateCompleted   = "update completed"
	MsgRollbackCompleted = "rollback completed"
)

// slotKey names a slot: its number for a replicated service, its node for a
// global one.
type slotKey struct {
	slot uint64
	node string
}

// UpdatePlan is one step of a rolling update of one service.
type UpdatePlan struct {
	// Replace holds the slots whose outdated task is replaced in this step.
	Replace map[slotKey]bool
	// StartFirst: a replaced slot's new task starts before the old one is
	// told to stop, which happens once the new one is ready.
	StartFirst bool
	// Status is the service's new UpdateStatus, nil when it stays.
	Status *api.UpdateStatus
	// Rollback says to swap Spec and PreviousSpec (Status is then
	// rollback_started); the slots are replaced from the next step on.
	Rollback bool
	// NextWake is when the plan may change with no event: a worker's delay
	// ends, or the monitor window after the last new task.
	NextWake time.Time
}

// taskReady reports whether a task of the new spec counts as updated:
// running and, with a health check, healthy (the agent keeps a checked task
// starting until a check passes; the health state is checked as well so a
// task that turns unhealthy stops counting).
func taskReady(t *api.Task) bool {
	return t.Status.State == api.TaskRunning && (t.Status.Health == "" || t.Status.Health == api.HealthHealthy)
}

// PlanUpdate is the rolling updater as a pure function of a service, all its
// tasks and the time. It keeps no memory between steps: the progress is
// the tasks' specs in the store and the service's UpdateStatus, so a new
// leader carries on where the old one was. The rules are Swarm's:
//
//   - A slot is outdated while the task holding it runs an older spec. An
//     update starts (status updating) when a slot is outdated and no update
//     is under way; PlanUpdate does not start one on its own when paused.
//   - Parallelism P (0: all) bounds the busy slots: those whose new task is
//     not ready yet, or became ready less than Delay ago (each of the P
//     workers waits Delay before taking its next slot). Outdated slots are
//     taken in order (slot number, node ID) up to P minus busy.
//   - A new-spec task that fails or is rejected after the update started is
//     a failure. When failures exceed MaxFailureRatio of the slots (any
//     failure with the default 0), FailureAction applies: pause (status
//     paused, nothing more replaced), continue, or rollback (Spec and
//     PreviousSpec swap and the rollback proceeds under the rollback config;
//     a rollback that fails pauses).
//   - Once no slot is outdated or busy, the update completes Monitor after
//     its last new task became ready; failures until then still count.
func PlanUpdate(now time.Time, svc *api.Service, tasks []*api.Task) UpdatePlan {
	r := &reconciler{svc: svc, specJSON: specKey(&svc.Spec.Task)}
	return planUpdate(now, svc, tasks, r.outdated)
}

// planUpdate is PlanUpdate with Reconcile's outdated, which remembers each
// task's answer (a spec's JSON costs).
func planUpdate(now time.Time, svc *api.Service, tasks []*api.Task, outdated func(*api.Task) bool) UpdatePlan {
	var p UpdatePlan
	st := svc.UpdateStatus
	rolling := st != nil && (st.State == api.UpdateRollbackStarted || st.State == api.UpdateRollbackPaused)
	cfg := updateConfig(svc, rolling)
	p.StartFirst = cfg.Order == api.OrderStartFirst
	if st != nil && (st.State == api.UpdatePaused || st.State == api.UpdateRollbackPaused) {
		return p
	}
	started := now
	if st != nil && (st.State == api.UpdateUpdating || rolling) {
		started = st.StartedAt
	}
	wake := func(at time.Time) {
		if p.NextWake.IsZero() || at.Before(p.NextWake) {
			p.NextWake = at
		}
	}

	slots := groupSlots(svc, tasks)
	var (
		candidates        []slotKey
		busy, inflight    int
		oldFinished       int
		lastReady         time.Time
		failed            *api.Task
		failures, inSlots int
	)
	for _, key := range slots.keys {
		var cur, old *api.Task
		for _, t := range slots.tasks[key] {
			if !outdated(t) && t.Status.Timestamp.Compare(started) >= 0 &&
				(t.Status.State == api.TaskFailed || t.Status.State == api.TaskRejected) {
				failures++
				if failed == nil || t.Status.Timestamp.Before(failed.Status.Timestamp) {
					failed = t
				}
			}
			if !holds(t) {
				continue
			}
			if outdated(t) {
				old = t
			} else {
				cur = t
			}
		}
		if cur == nil && old == nil {
			continue
		}
		inSlots++
		switch {
		case cur != nil && occupies(cur) && taskReady(cur):
			at := cur.Status.Timestamp
			if at.Compare(started) >= 0 {
				lastReady = later(lastReady, at)
				if end := at.Add(cfg.Delay); now.Before(end) {
					busy++
					wake(end)
				}
			}
		case cur != nil && occupies(cur):
			busy++
			inflight++
		case cur != nil: // finished: the restart policy's business
		case occupies(old):
			candidates = append(candidates, key)
		default: // finished on the old spec: Reconcile replaces it at once
			oldFinished++
		}
	}

	// New tasks in empty slots (a new service, scaling up) are no update.
	if len(candidates) == 0 && oldFinished == 0 && (st == nil || st.State == api.UpdateCompleted || st.State == api.UpdateRollbackCompleted) {
		return p // nothing to update
	}
	if st == nil || st.State == api.UpdateCompleted || st.State == api.UpdateRollbackCompleted {
		p.Status = &api.UpdateStatus{State: api.UpdateUpdating, Message: MsgUpdating, StartedAt: now}
		st = p.Status
	}

	if failures > 0 && cfg.FailureAction != api.ActionContinue &&
		float64(failures) > cfg.MaxFailureRatio*float64(inSlots) {
		why := fmt.Sprintf("failure or early termination of task %s", taskRef(failed))
		next := *st
		switch {
		case rolling:
			next.State, next.Message = api.UpdateRollbackPaused, "rollback paused due to "+why
		case cfg.FailureAction == api.ActionRollback && svc.PreviousSpec != nil:
			next = api.UpdateStatus{State: api.UpdateRollbackStarted, Message: "update rolled back due to " + why, StartedAt: now}
			p.Rollback = true
		case cfg.FailureAction == api.ActionRollback:
			next.State, next.Message = api.UpdatePaused, "update paused due to "+why+" (no previous spec to roll back to)"
		default:
			next.State, next.Message = api.UpdatePaused, "update paused due to "+why
		}
		p.Status, p.NextWake = &next, time.Time{}
		return p
	}

	if len(candidates) == 0 && oldFinished == 0 && inflight == 0 {
		if done := lastReady.Add(cfg.Monitor); now.Before(done) {
			wake(done)
			return p
		}
		next := *st
		next.State, next.Message, next.CompletedAt = api.UpdateCompleted, MsgUpdateCompleted, now
		if rolling {
			// Keep why it rolled back: the user reads it here.
			next.State, next.Message = api.UpdateRollbackCompleted, MsgRollbackCompleted
			if st.Message != "" {
				next.Message += " (" + st.Message + ")"
			}
		}
		p.Status, p.NextWake = &next, time.Time{}
		return p
	}

	n := len(candidates)
	if cfg.Parallelism > 0 {
		n = min(n, max(int(cfg.Parallelism)-busy, 0))
	}
	if n > 0 {
		p.Replace = make(map[slotKey]bool, n)
		for _, k := range candidates[:n] {
			p.Replace[k] = true
		}
	}
	return p
}

// updateConfig is the config that drives the update: the rollback config
// while rolling back; Swarm's defaults when none is set.
func updateConfig(svc *api.Service, rollback bool) api.UpdateConfig {
	c := svc.Spec.Update
	if rollback {
		c = svc.Spec.Rollback
	}
	if c == nil {
		return api.DefaultUpdateConfig()
	}
	return *c
}

type slotGroups struct {
	keys  []slotKey
	tasks map[slotKey][]*api.Task // oldest first
}

// groupSlots sorts a service's tasks into its slots: 1..Replicas for a
// replicated service, one per node for a global one. Tasks in slots being
// scaled away are left out: Reconcile stops them.
func groupSlots(svc *api.Service, tasks []*api.Task) slotGroups {
	g := slotGroups{tasks: make(map[slotKey][]*api.Task, len(tasks))}
	sorted := tasks
	if !slices.IsSortedFunc(tasks, olderFirst) { // Reconcile passes them sorted
		sorted = slices.Clone(tasks)
		slices.SortFunc(sorted, olderFirst)
	}
	for _, t := range sorted {
		k := slotKey{slot: t.Slot}
		if svc.Spec.Mode == api.ModeGlobal {
			k = slotKey{node: t.NodeID}
		} else if t.Slot == 0 || t.Slot > svc.Spec.Replicas {
			continue
		}
		if _, ok := g.tasks[k]; !ok {
			g.keys = append(g.keys, k)
		}
		g.tasks[k] = append(g.tasks[k], t)
	}
	slices.SortFunc(g.keys, func(a, b slotKey) int {
		return cmp.Or(cmp.Compare(a.slot, b.slot), strings.Compare(a.node, b.node))
	})
	return g
}

// taskRef names a task for a message: service.slot (or service.node), its
// ID and, when it has one, its error.
func taskRef(t *api.Task) string {
	name := fmt.Sprintf("%s.%d", t.ServiceName, t.Slot)
	if t.Slot == 0 {
		name = t.ServiceName + "." + t.NodeID
	}
	s := fmt.Sprintf("%s (%s): %s", name, t.ID, t.Status.State)
	if t.Status.Err != "" {
		s += ": " + t.Status.Err
	}
	return s
}

func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}
