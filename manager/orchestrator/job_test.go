package orchestrator

import (
	"testing"
	"time"

	"github.com/shoal-dev/shoal/api"
)

// job is a replicated job of total completions, at most maxRun at once,
// restarted on failure after delay, in run iteration.
func job(total, maxRun uint64, iteration uint64, delay time.Duration) *api.Service {
	return service(api.ModeReplicatedJob, total, restart(api.RestartOnFailure, delay, 0), func(s *api.Service) {
		s.Spec.MaxConcurrent = maxRun
		s.JobIteration = iteration
	})
}

// jobTask is a task of a job's run iteration in state; desired is running
// unless the task is done (complete, or failed for good).
func jobTask(id string, slot uint64, nodeID string, iteration uint64, desired, state api.TaskState, age time.Duration) *api.Task {
	return taskAt(id, slot, nodeID, desired, state, age, withTaskRestart(api.RestartOnFailure, 0, 0),
		func(t *api.Task) { t.JobIteration = iteration })
}

func TestReconcileReplicatedJob(t *testing.T) {
	const run, done, complete, failed = api.TaskRunning, api.TaskComplete, api.TaskComplete, api.TaskFailed
	runCases(t, []reconcileCase{
		{
			name: "new job starts max-concurrent tasks, lowest slots first",
			svc:  job(5, 2, 0, 0),
			want: outcome{Create: []string{"slot 1", "slot 2"}},
		},
		{
			name: "max concurrent 0 runs every task at once",
			svc:  job(3, 0, 0, 0),
			want: outcome{Create: []string{"slot 1", "slot 2", "slot 3"}},
		},
		{
			name:  "two running: nothing more starts",
			svc:   job(5, 2, 0, 0),
			tasks: []*api.Task{jobTask("a", 1, "n1", 0, run, run, time.Minute), jobTask("b", 2, "n2", 0, run, run, time.Minute)},
		},
		{
			name:  "a completed task is done, not restarted, and the next slot starts",
			svc:   job(5, 2, 0, 0),
			tasks: []*api.Task{jobTask("a", 1, "n1", 0, run, complete, time.Minute), jobTask("b", 2, "n2", 0, run, run, time.Minute)},
			want:  outcome{Create: []string{"slot 3"}, Update: []string{"a complete"}},
		},
		{
			name: "all complete: nothing to do",
			svc:  job(3, 2, 0, 0),
			tasks: []*api.Task{jobTask("a", 1, "n1", 0, done, complete, time.Minute), jobTask("b", 2, "n2", 0, done, complete, time.Minute),
				jobTask("c", 3, "n1", 0, done, complete, time.Minute)},
		},
		{
			name:  "a failed task is retried in its slot under the restart policy",
			svc:   job(3, 2, 0, 0),
			tasks: []*api.Task{jobTask("a", 1, "n1", 0, run, failed, time.Minute), jobTask("b", 2, "n2", 0, run, run, time.Minute)},
			want:  outcome{Create: []string{"slot 1"}, Update: []string{"a shutdown"}},
		},
		{
			name:  "a retry waits for the restart delay; meanwhile the next slot runs",
			svc:   job(3, 1, 0, 10*time.Second),
			tasks: []*api.Task{taskAt("a", 1, "n1", run, failed, 3*time.Second, withTaskRestart(api.RestartOnFailure, 10*time.Second, 0))},
			want:  outcome{Create: []string{"slot 2"}, Wake: t0.Add(7 * time.Second)},
		},
		{
			name: "a retry due waits for a free place like a new task",
			svc:  job(3, 1, 0, 0),
			tasks: []*api.Task{jobTask("a", 1, "n1", 0, run, failed, time.Minute),
				jobTask("b", 2, "n2", 0, run, run, time.Minute)},
		},
		{
			name: "restart none: a failed task is done, failed",
			svc: service(api.ModeReplicatedJob, 2, restart(api.RestartNone, 0, 0), func(s *api.Service) {
				s.Spec.MaxConcurrent = 1
			}),
			tasks: []*api.Task{taskAt("a", 1, "n1", run, failed, time.Minute, withTaskRestart(api.RestartNone, 0, 0))},
			want:  outcome{Create: []string{"slot 2"}, Update: []string{"a complete"}},
		},
		{
			name: "a new run stops the earlier run's tasks, keeps them, and starts over",
			svc:  job(3, 2, 1, 0),
			tasks: []*api.Task{jobTask("a", 1, "n1", 0, done, complete, time.Minute), jobTask("b", 2, "n2", 0, done, complete, time.Minute),
				jobTask("c", 3, "n1", 0, run, run, time.Minute)},
			want: outcome{Create: []string{"slot 1", "slot 2"}, Update: []string{"a shutdown", "b shutdown", "c shutdown"}},
		},
		{
			name:  "a task on a node gone down is replaced at once",
			svc:   job(2, 1, 0, 0),
			tasks: []*api.Task{jobTask("a", 1, "ndown", 0, run, run, time.Minute)},
			want:  outcome{Create: []string{"slot 1"}, Update: []string{"a shutdown:node down"}},
		},
		{
			name: "scaled down: slots beyond the total stop",
			svc:  job(1, 2, 0, 0),
			tasks: []*api.Task{jobTask("a", 1, "n1", 0, run, run, time.Minute),
				jobTask("b", 2, "n2", 0, run, run, time.Minute)},
			want: outcome{Update: []string{"b shutdown"}},
		},
	})
}

func TestReconcileGlobalJob(t *testing.T) {
	const run, done, complete, failed = api.TaskRunning, api.TaskComplete, api.TaskComplete, api.TaskFailed
	gjob := func(iteration uint64) *api.Service {
		return service(api.ModeGlobalJob, 0, restart(api.RestartOnFailure, 0, 0), func(s *api.Service) { s.JobIteration = iteration })
	}
	runCases(t, []reconcileCase{
		{
			name: "one task on every ready, active node",
			svc:  gjob(0),
			want: outcome{Create: []string{"node n1", "node n2"}},
		},
		{
			name:  "a completed task is done, not restarted",
			svc:   gjob(0),
			tasks: []*api.Task{jobTask("a", 0, "n1", 0, run, complete, time.Minute), jobTask("b", 0, "n2", 0, done, complete, time.Minute)},
			want:  outcome{Update: []string{"a complete"}},
		},
		{
			name:  "a failed task is retried",
			svc:   gjob(0),
			tasks: []*api.Task{jobTask("a", 0, "n1", 0, run, failed, time.Minute), jobTask("b", 0, "n2", 0, done, complete, time.Minute)},
			want:  outcome{Create: []string{"node n1"}, Update: []string{"a shutdown"}},
		},
		{
			name:  "a new run starts over on every node",
			svc:   gjob(2),
			tasks: []*api.Task{jobTask("a", 0, "n1", 1, done, complete, time.Minute), jobTask("b", 0, "n2", 1, run, run, time.Minute)},
			want:  outcome{Create: []string{"node n1", "node n2"}, Update: []string{"a shutdown", "b shutdown"}},
		},
	})
}

// A job of 5 with max-concurrent 2 driven to the end: never more than 2
// occupy their slots, each slot completes once, and nothing is left to do.
func TestReplicatedJobRunsToCompletion(t *testing.T) {
	svc := job(5, 2, 0, 0)
	nodes := readyNodes()
	var tasks []*api.Task
	now := t0
	completions := 0
	for step := 0; step < 50; step++ {
		p := Reconcile(now, svc, tasks, nodes)
		tasks = apply(now, tasks, p)
		occupying := 0
		for _, tk := range tasks {
			if occupies(tk) {
				occupying++
			}
		}
		if occupying > 2 {
			t.Fatalf("step %d: %d tasks occupy their slots, want at most 2", step, occupying)
		}
		if p.Empty() && occupying == 0 {
			break
		}
		// The agent: the oldest occupying task completes.
		for _, tk := range tasks {
			if occupies(tk) {
				tk.NodeID, tk.Status.State, tk.Status.Timestamp = "n1", api.TaskComplete, now
				completions++
				break
			}
		}
		now = now.Add(time.Second)
	}
	if completions != 5 {
		t.Errorf("got %d completions, want 5", completions)
	}
	for _, tk := range tasks {
		if tk.DesiredState != api.TaskComplete || tk.Status.State != api.TaskComplete {
			t.Errorf("task %s slot %d: desired %s state %s, want complete", tk.ID, tk.Slot, tk.DesiredState, tk.Status.State)
		}
	}
}
