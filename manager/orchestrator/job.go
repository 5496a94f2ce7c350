package orchestrator

import (
	"github.com/shoal-dev/shoal/api"
)

// Jobs (api/job.go) reuse the replicated and global rules with three
// differences, as Swarm's job orchestrators:
//
//   - A task of an earlier run (JobIteration below the service's) is
//     stopped and kept as history; the slot (or node) is filled again for
//     the current run. There is no rolling update: a run replaces all.
//   - The restart condition is on-failure unless said (the API fills it),
//     so a complete task is done and holds its slot: the job's completion.
//   - A replicated job runs at most MaxConcurrent tasks at once (0: all):
//     slots without a task, and failed tasks due for a retry, get a new task
//     in slot order while fewer than MaxConcurrent occupy their slots.

// currentRun stops the tasks of earlier runs of a job that still hold
// their slot and returns the others; for other services it returns tasks.
func (r *reconciler) currentRun(tasks []*api.Task) []*api.Task {
	if !r.job {
		return tasks
	}
	var cur []*api.Task
	for _, t := range tasks {
		if !r.outdated(t) {
			cur = append(cur, t)
		} else if holds(t) {
			r.set(t, api.TaskShutdown, "")
		}
	}
	return cur
}

// replicatedJob keeps slots 1..Replicas of a replicated job (its total
// completions) moving towards completion, at most MaxConcurrent at once.
func (r *reconciler) replicatedJob(tasks []*api.Task) {
	want := r.svc.Spec.Replicas
	bySlot := r.retireSlotsBeyond(tasks, want)
	maxRun := r.svc.Spec.MaxConcurrent
	if maxRun == 0 || maxRun > want {
		maxRun = want
	}
	type need struct {
		slot       uint64
		quickExits uint64
		old        *api.Task // a failed task the new one retries
	}
	var needs []need
	running := uint64(0)
	for s := uint64(1); s <= want; s++ {
		cur := r.currentRun(bySlot[s])
		h := r.settle(cur)
		switch {
		case h == nil:
			needs = append(needs, need{slot: s})
		case occupies(h):
			if msg := r.nodeProblem(h.NodeID); msg != "" {
				r.set(h, api.TaskShutdown, msg)
				needs = append(needs, need{slot: s})
				continue
			}
			running++
		case finished(h):
			if !shouldRestart(h, cur, r.now) {
				r.set(h, api.TaskComplete, "")
				continue
			}
			qe := QuickExits(h)
			due := finishedAt(h).Add(RestartDelay(h, qe))
			if r.nodeProblem(h.NodeID) != "" {
				due = r.now
			}
			if r.now.Before(due) {
				r.wake(due)
				continue
			}
			needs = append(needs, need{slot: s, quickExits: qe, old: h})
		}
		// done (completed, or failed for good): the slot is settled.
	}
	created := make(map[uint64]int)
	for _, n := range needs {
		if running >= maxRun {
			break
		}
		if n.old != nil {
			r.set(n.old, api.TaskShutdown, "")
		}
		r.create(n.slot, "", n.quickExits)
		created[n.slot] = 1
		running++
	}
	limit := r.historyLimit()
	for s := uint64(1); s <= want; s++ {
		r.trim(bySlot[s], created[s], limit)
	}
}
