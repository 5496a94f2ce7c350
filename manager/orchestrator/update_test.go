package orchestrator

import (
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/shoal-dev/shoal/api"
)

// updSvc is service "web" at version 20 whose spec runs image v2 (the old
// one ran v1, PreviousSpec), with the given update config.
func updSvc(replicas uint64, cfg api.UpdateConfig, mods ...func(*api.Service)) *api.Service {
	return service(api.ModeReplicated, replicas, append([]func(*api.Service){func(s *api.Service) {
		prev := s.Spec
		prev.Task.Image = "v1"
		s.PreviousSpec = &prev
		s.Spec.Task.Image = "v2"
		s.Spec.Update = &cfg
		rb := api.DefaultUpdateConfig()
		s.Spec.Rollback = &rb
		s.Meta.Version = 20
	}}, mods...)...)
}

func status(state api.UpdateState, started time.Duration) func(*api.Service) {
	return func(s *api.Service) {
		s.UpdateStatus = &api.UpdateStatus{State: state, StartedAt: t0.Add(-started)}
	}
}

// oldTask runs image v1 in slot since long ago.
func oldTask(id string, slot uint64, mods ...func(*api.Task)) *api.Task {
	return running(id, slot, "n1", append([]func(*api.Task){withSpec(func(s *api.TaskSpec) { s.Image = "v1" }, 10)}, mods...)...)
}

// newTask runs image v2 (version 20) in slot, its status state since ago.
func newTask(id string, slot uint64, desired, state api.TaskState, ago time.Duration) *api.Task {
	return taskAt(id, slot, "n1", desired, state, ago, withSpec(func(s *api.TaskSpec) { s.Image = "v2" }, 20))
}

func cfg(p uint64, delay time.Duration, action api.FailureAction, ratio float64, order api.UpdateOrder) api.UpdateConfig {
	return api.UpdateConfig{Parallelism: p, Delay: delay, FailureAction: action, Monitor: 5 * time.Second, MaxFailureRatio: ratio, Order: order}
}

type updateWant struct {
	replace    []uint64
	state      api.UpdateState // "" means unchanged
	msg        string          // a substring of the new status message
	rollback   bool
	startFirst bool
	wake       time.Duration // after t0; 0 means none
}

func TestPlanUpdate(t *testing.T) {
	pause := cfg(2, 0, api.ActionPause, 0, api.OrderStopFirst)
	cases := []struct {
		name  string
		svc   *api.Service
		tasks []*api.Task
		want  updateWant
	}{
		{
			name:  "a new service is no update",
			svc:   updSvc(2, pause, func(s *api.Service) { s.PreviousSpec = nil }),
			tasks: []*api.Task{newTask("a", 1, api.TaskRunning, api.TaskPending, 0)},
		},
		{
			name:  "an update starts with parallelism slots, in slot order",
			svc:   updSvc(4, pause),
			tasks: []*api.Task{oldTask("d", 4), oldTask("c", 3), oldTask("b", 2), oldTask("a", 1)},
			want:  updateWant{replace: []uint64{1, 2}, state: api.UpdateUpdating, msg: MsgUpdating},
		},
		{
			name:  "parallelism 0 takes every slot",
			svc:   updSvc(3, cfg(0, 0, api.ActionPause, 0, api.OrderStopFirst), status(api.UpdateUpdating, time.Minute)),
			tasks: []*api.Task{oldTask("a", 1), oldTask("b", 2), oldTask("c", 3)},
			want:  updateWant{replace: []uint64{1, 2, 3}},
		},
		{
			name: "a task not ready yet keeps its worker busy",
			svc:  updSvc(4, pause, status(api.UpdateUpdating, time.Minute)),
			tasks: []*api.Task{
				oldTask("a", 1, func(t *api.Task) { t.DesiredState = api.TaskShutdown }), newTask("a2", 1, api.TaskRunning, api.TaskStarting, time.Second),
				oldTask("b", 2), oldTask("c", 3), oldTask("d", 4),
			},
			want: updateWant{replace: []uint64{2}},
		},
		{
			name: "a ready task's worker waits the delay",
			svc:  updSvc(3, cfg(1, 10*time.Second, api.ActionPause, 0, api.OrderStopFirst), status(api.UpdateUpdating, time.Minute)),
			tasks: []*api.Task{
				newTask("a2", 1, api.TaskRunning, api.TaskRunning, 4*time.Second),
				oldTask("b", 2), oldTask("c", 3),
			},
			want: updateWant{wake: 6 * time.Second},
		},
		{
			name: "after the delay the next slot goes",
			svc:  updSvc(3, cfg(1, 10*time.Second, api.ActionPause, 0, api.OrderStopFirst), status(api.UpdateUpdating, time.Minute)),
			tasks: []*api.Task{
				newTask("a2", 1, api.TaskRunning, api.TaskRunning, 10*time.Second),
				oldTask("b", 2), oldTask("c", 3),
			},
			want: updateWant{replace: []uint64{2}},
		},
		{
			name: "a running task not healthy yet keeps its worker busy",
			svc:  updSvc(2, cfg(1, 0, api.ActionPause, 0, api.OrderStopFirst), status(api.UpdateUpdating, time.Minute)),
			tasks: []*api.Task{
				withHealth(newTask("a2", 1, api.TaskRunning, api.TaskRunning, time.Second), api.HealthStarting),
				oldTask("b", 2),
			},
		},
		{
			name: "a healthy task frees its worker",
			svc:  updSvc(2, cfg(1, 0, api.ActionPause, 0, api.OrderStopFirst), status(api.UpdateUpdating, time.Minute)),
			tasks: []*api.Task{
				withHealth(newTask("a2", 1, api.TaskRunning, api.TaskRunning, time.Second), api.HealthHealthy),
				oldTask("b", 2),
			},
			want: updateWant{replace: []uint64{2}},
		},
		{
			name:  "start-first is passed on",
			svc:   updSvc(1, cfg(1, 0, api.ActionPause, 0, api.OrderStartFirst), status(api.UpdateUpdating, time.Minute)),
			tasks: []*api.Task{oldTask("a", 1)},
			want:  updateWant{replace: []uint64{1}, startFirst: true},
		},
		{
			name: "a failed new task pauses the update",
			svc:  updSvc(3, pause, status(api.UpdateUpdating, time.Minute)),
			tasks: []*api.Task{
				newTask("a2", 1, api.TaskRunning, api.TaskFailed, time.Second),
				oldTask("b", 2), oldTask("c", 3),
			},
			want: updateWant{state: api.UpdatePaused, msg: "update paused due to failure or early termination of task web.1 (a2): failed"},
		},
		{
			name: "a failure from before the update does not count",
			svc:  updSvc(3, pause, status(api.UpdateUpdating, time.Minute)),
			tasks: []*api.Task{
				newTask("x", 1, api.TaskShutdown, api.TaskFailed, 2*time.Minute),
				oldTask("a", 1), oldTask("b", 2), oldTask("c", 3),
			},
			want: updateWant{replace: []uint64{1, 2}},
		},
		{
			name: "failures up to the max ratio are tolerated",
			svc:  updSvc(4, cfg(4, 0, api.ActionPause, 0.5, api.OrderStopFirst), status(api.UpdateUpdating, time.Minute)),
			tasks: []*api.Task{
				newTask("a2", 1, api.TaskRunning, api.TaskRejected, time.Second),
				newTask("b2", 2, api.TaskRunning, api.TaskFailed, time.Second),
				oldTask("c", 3), oldTask("d", 4),
			},
			want: updateWant{replace: []uint64{3, 4}},
		},
		{
			name: "failures beyond the max ratio pause",
			svc:  updSvc(4, cfg(4, 0, api.ActionPause, 0.5, api.OrderStopFirst), status(api.UpdateUpdating, time.Minute)),
			tasks: []*api.Task{
				newTask("a2", 1, api.TaskRunning, api.TaskRejected, time.Second),
				newTask("b2", 2, api.TaskRunning, api.TaskFailed, time.Second),
				newTask("c2", 3, api.TaskRunning, api.TaskFailed, 2*time.Second),
				oldTask("d", 4),
			},
			want: updateWant{state: api.UpdatePaused, msg: "task web.3 (c2)"},
		},
		{
			name: "continue ignores failures",
			svc:  updSvc(2, cfg(1, 0, api.ActionContinue, 0, api.OrderStopFirst), status(api.UpdateUpdating, time.Minute)),
			tasks: []*api.Task{
				newTask("a2", 1, api.TaskRunning, api.TaskFailed, time.Second),
				oldTask("b", 2),
			},
			want: updateWant{replace: []uint64{2}},
		},
		{
			name: "rollback on failure",
			svc:  updSvc(2, cfg(1, 0, api.ActionRollback, 0, api.OrderStopFirst), status(api.UpdateUpdating, time.Minute)),
			tasks: []*api.Task{
				withErr(newTask("a2", 1, api.TaskRunning, api.TaskRejected, time.Second), "pull v2: not found"),
				oldTask("b", 2),
			},
			want: updateWant{state: api.UpdateRollbackStarted, rollback: true, msg: "update rolled back due to failure or early termination of task web.1 (a2): rejected: pull v2: not found"},
		},
		{
			name: "rollback with no previous spec pauses",
			svc: updSvc(2, cfg(1, 0, api.ActionRollback, 0, api.OrderStopFirst), status(api.UpdateUpdating, time.Minute),
				func(s *api.Service) { s.PreviousSpec = nil }),
			tasks: []*api.Task{newTask("a2", 1, api.TaskRunning, api.TaskFailed, time.Second), oldTask("b", 2)},
			want:  updateWant{state: api.UpdatePaused, msg: "no previous spec"},
		},
		{
			name: "a failing rollback pauses",
			svc:  updSvc(2, cfg(1, 0, api.ActionRollback, 0, api.OrderStopFirst), status(api.UpdateRollbackStarted, time.Minute)),
			tasks: []*api.Task{
				newTask("a2", 1, api.TaskRunning, api.TaskFailed, time.Second),
				oldTask("b", 2),
			},
			want: updateWant{state: api.UpdateRollbackPaused, msg: "rollback paused due to"},
		},
		{
			name:  "a paused update replaces nothing",
			svc:   updSvc(2, pause, status(api.UpdatePaused, time.Minute)),
			tasks: []*api.Task{oldTask("a", 1), oldTask("b", 2)},
		},
		{
			name:  "done: waits the monitor window after the last ready task",
			svc:   updSvc(2, pause, status(api.UpdateUpdating, time.Minute)),
			tasks: []*api.Task{newTask("a2", 1, api.TaskRunning, api.TaskRunning, 30*time.Second), newTask("b2", 2, api.TaskRunning, api.TaskRunning, 2*time.Second)},
			want:  updateWant{wake: 3 * time.Second},
		},
		{
			name:  "done: completed after the monitor window",
			svc:   updSvc(2, pause, status(api.UpdateUpdating, time.Minute)),
			tasks: []*api.Task{newTask("a2", 1, api.TaskRunning, api.TaskRunning, 30*time.Second), newTask("b2", 2, api.TaskRunning, api.TaskRunning, 5*time.Second)},
			want:  updateWant{state: api.UpdateCompleted, msg: MsgUpdateCompleted},
		},
		{
			name:  "a rollback completes as one",
			svc:   updSvc(1, pause, status(api.UpdateRollbackStarted, time.Minute)),
			tasks: []*api.Task{newTask("a2", 1, api.TaskRunning, api.TaskRunning, 30*time.Second)},
			want:  updateWant{state: api.UpdateRollbackCompleted, msg: MsgRollbackCompleted},
		},
		{
			name: "a rollback runs under the rollback config",
			svc: updSvc(3, pause, status(api.UpdateRollbackStarted, time.Minute), func(s *api.Service) {
				s.Spec.Rollback = &api.UpdateConfig{Parallelism: 0, FailureAction: api.ActionPause}
			}),
			tasks: []*api.Task{oldTask("a", 1), oldTask("b", 2), oldTask("c", 3)},
			want:  updateWant{replace: []uint64{1, 2, 3}},
		},
		{
			name:  "force: a bumped counter outdates every task",
			svc:   updSvc(2, pause, func(s *api.Service) { s.Spec.Task.Image = "v1"; s.Spec.Task.ForceUpdate = 1 }),
			tasks: []*api.Task{oldTask("a", 1), oldTask("b", 2)},
			want:  updateWant{replace: []uint64{1, 2}, state: api.UpdateUpdating},
		},
		{
			name:  "a completed service with nothing outdated stays",
			svc:   updSvc(1, pause, status(api.UpdateCompleted, time.Minute)),
			tasks: []*api.Task{newTask("a2", 1, api.TaskRunning, api.TaskRunning, 30*time.Second)},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := PlanUpdate(t0, tc.svc, tc.tasks)
			var got []uint64
			for k := range p.Replace {
				got = append(got, k.slot)
			}
			slices.Sort(got)
			if !reflect.DeepEqual(got, tc.want.replace) {
				t.Errorf("replace: got %v, want %v", got, tc.want.replace)
			}
			var state api.UpdateState
			if p.Status != nil {
				state = p.Status.State
				if !strings.Contains(p.Status.Message, tc.want.msg) {
					t.Errorf("message: got %q, want it to contain %q", p.Status.Message, tc.want.msg)
				}
			}
			if state != tc.want.state {
				t.Errorf("state: got %q, want %q", state, tc.want.state)
			}
			if p.Rollback != tc.want.rollback || p.StartFirst != tc.want.startFirst {
				t.Errorf("rollback, start-first: got %v %v, want %v %v", p.Rollback, p.StartFirst, tc.want.rollback, tc.want.startFirst)
			}
			var wake time.Duration
			if !p.NextWake.IsZero() {
				wake = p.NextWake.Sub(t0)
			}
			if wake != tc.want.wake {
				t.Errorf("wake: got %v, want %v", wake, tc.want.wake)
			}
		})
	}
}

func withErr(t *api.Task, msg string) *api.Task { t.Status.Err = msg; return t }

// TestReconcileRollingUpdate checks how Reconcile carries out the updater's
// steps: stop-first and start-first replacement, and the rollback's swap.
func TestReconcileRollingUpdate(t *testing.T) {
	startFirst := cfg(1, 0, api.ActionRollback, 0, api.OrderStartFirst)
	cases := []struct {
		name    string
		svc     *api.Service
		tasks   []*api.Task
		want    outcome
		state   api.UpdateState
		svcSpec string // image of the written service's spec, when written
	}{
		{
			name:  "stop-first: the old task stops as its replacement is created",
			svc:   updSvc(2, cfg(1, 0, api.ActionPause, 0, api.OrderStopFirst), status(api.UpdateUpdating, time.Minute)),
			tasks: []*api.Task{oldTask("a", 1), oldTask("b", 2)},
			want:  outcome{Create: []string{"slot 1"}, Update: []string{"a shutdown"}},
		},
		{
			name:  "start-first: the replacement is created, the old task runs on",
			svc:   updSvc(2, startFirst, status(api.UpdateUpdating, time.Minute)),
			tasks: []*api.Task{oldTask("a", 1), oldTask("b", 2)},
			want:  outcome{Create: []string{"slot 1"}},
		},
		{
			name:  "start-first: the old task waits for the new one to be ready",
			svc:   updSvc(2, startFirst, status(api.UpdateUpdating, time.Minute)),
			tasks: []*api.Task{oldTask("a", 1), newTask("a2", 1, api.TaskRunning, api.TaskStarting, 0), oldTask("b", 2)},
			want:  outcome{},
		},
		{
			name:  "start-first: the old task stops once the new one runs, and the next slot goes",
			svc:   updSvc(2, startFirst, status(api.UpdateUpdating, time.Minute)),
			tasks: []*api.Task{oldTask("a", 1), newTask("a2", 1, api.TaskRunning, api.TaskRunning, 0), oldTask("b", 2)},
			want:  outcome{Create: []string{"slot 2"}, Update: []string{"a shutdown"}},
		},
		{
			name:    "a failure swaps the spec back and writes nothing else",
			svc:     updSvc(2, startFirst, status(api.UpdateUpdating, time.Minute)),
			tasks:   []*api.Task{oldTask("a", 1), newTask("a2", 1, api.TaskRunning, api.TaskFailed, 0), oldTask("b", 2)},
			state:   api.UpdateRollbackStarted,
			svcSpec: "v1",
		},
		{
			name:    "an update starts",
			svc:     updSvc(1, startFirst),
			tasks:   []*api.Task{oldTask("a", 1)},
			want:    outcome{Create: []string{"slot 1"}},
			state:   api.UpdateUpdating,
			svcSpec: "v2",
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := Reconcile(t0, tc.svc, tc.tasks, readyNodes())
			if got := summarize(p); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got %+v, want %+v", got, tc.want)
			}
			switch {
			case p.Service == nil && tc.state != "":
				t.Errorf("service not written, want state %s", tc.state)
			case p.Service != nil && tc.state == "":
				t.Errorf("service written with %+v, want none", p.Service.UpdateStatus)
			case p.Service != nil:
				if p.Service.UpdateStatus.State != tc.state || p.Service.Spec.Task.Image != tc.svcSpec {
					t.Errorf("service: got %s with %s, want %s with %s", p.Service.UpdateStatus.State, p.Service.Spec.Task.Image, tc.state, tc.svcSpec)
				}
				if tc.svcSpec == "v1" && p.Service.PreviousSpec.Task.Image != "v2" {
					t.Errorf("previous spec after rollback: got %s, want v2", p.Service.PreviousSpec.Task.Image)
				}
			}
		})
	}
}

// BenchmarkReconcileUpdate is one pass over a 10,000-replica service half
// way through an update: the planner's share of a pass at scale.
func BenchmarkReconcileUpdate(b *testing.B) {
	const n = 10000
	svc := updSvc(n, cfg(10, 0, api.ActionPause, 0, api.OrderStopFirst), status(api.UpdateUpdating, time.Minute))
	var tasks []*api.Task
	for s := uint64(1); s <= n; s++ {
		if s%2 == 0 {
			tasks = append(tasks, newTask(fmt.Sprint("t", s), s, api.TaskRunning, api.TaskRunning, time.Minute))
		} else {
			tasks = append(tasks, oldTask(fmt.Sprint("t", s), s))
		}
	}
	nodes := readyNodes()
	b.ResetTimer()
	for b.Loop() {
		Reconcile(t0, svc, tasks, nodes)
	}
}

func withHealth(t *api.Task, h api.Health) *api.Task { t.Status.Health = h; return t }
