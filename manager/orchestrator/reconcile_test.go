package orchestrator

import (
	"fmt"
	"maps"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/shoal-dev/shoal/api"
)

var t0 = time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)

const svcVersion = 10

func service(mode api.ServiceMode, replicas uint64, mods ...func(*api.Service)) *api.Service {
	s := &api.Service{
		ID:   "svc",
		Meta: api.Meta{Version: svcVersion},
		Spec: api.ServiceSpec{
			Name: "web", Mode: mode, Replicas: replicas,
			Task: api.TaskSpec{Image: "busybox", Restart: api.RestartPolicy{Condition: api.RestartAny}},
		},
	}
	for _, m := range mods {
		m(s)
	}
	return s
}

// allAtOnce sets update parallelism 0.
func allAtOnce(s *api.Service) {
	s.Spec.Update = &api.UpdateConfig{Parallelism: 0, Order: api.OrderStopFirst}
}

func restart(cond api.RestartCondition, delay time.Duration, maxAttempts uint64) func(*api.Service) {
	return func(s *api.Service) {
		s.Spec.Task.Restart = api.RestartPolicy{Condition: cond, Delay: &delay, MaxAttempts: maxAttempts}
	}
}

func node(id string, state api.NodeState, avail api.Availability, labels ...string) *api.Node {
	n := &api.Node{ID: id, Spec: api.NodeSpec{Role: api.RoleWorker, Availability: avail, Labels: map[string]string{}},
		Status: api.NodeStatus{State: state}}
	for i := 0; i+1 < len(labels); i += 2 {
		n.Spec.Labels[labels[i]] = labels[i+1]
	}
	return n
}

func readyNodes() []*api.Node {
	return []*api.Node{
		node("n1", api.NodeStateReady, api.AvailabilityActive),
		node("n2", api.NodeStateReady, api.AvailabilityActive),
		node("ndown", api.NodeStateDown, api.AvailabilityActive),
		node("ndrain", api.NodeStateReady, api.AvailabilityDrain),
		node("npause", api.NodeStateReady, api.AvailabilityPause),
	}
}

// taskAt builds a task of the default service spec created age ago; the
// status timestamp is its creation time unless changed.
func taskAt(id string, slot uint64, nodeID string, desired, state api.TaskState, age time.Duration, mods ...func(*api.Task)) *api.Task {
	svc := service(api.ModeReplicated, 0)
	t := &api.Task{
		ID: id, Meta: api.Meta{Version: 5, CreatedAt: t0.Add(-age)},
		ServiceID: "svc", ServiceName: "web", Slot: slot, NodeID: nodeID,
		Spec: svc.Spec.Task, SpecVersion: svcVersion,
		DesiredState: desired, Status: api.TaskStatus{State: state, Timestamp: t0.Add(-age)},
	}
	for _, m := range mods {
		m(t)
	}
	return t
}

func running(id string, slot uint64, nodeID string, mods ...func(*api.Task)) *api.Task {
	return taskAt(id, slot, nodeID, api.TaskRunning, api.TaskRunning, time.Minute, mods...)
}

func finishedAgo(d time.Duration) func(*api.Task) {
	return func(t *api.Task) { t.Status.Timestamp = t0.Add(-d) }
}

func withSpec(mod func(*api.TaskSpec), version uint64) func(*api.Task) {
	return func(t *api.Task) { mod(&t.Spec); t.SpecVersion = version }
}

func withWindow(d time.Duration) func(*api.Service) {
	return func(s *api.Service) { s.Spec.Task.Restart.Window = d }
}

func taskWindow(d time.Duration) func(*api.Task) {
	return func(t *api.Task) { t.Spec.Restart.Window = d }
}

func withTaskRestart(cond api.RestartCondition, delay time.Duration, maxAttempts uint64) func(*api.Task) {
	return func(t *api.Task) {
		t.Spec.Restart = api.RestartPolicy{Condition: cond, Delay: &delay, MaxAttempts: maxAttempts}
	}
}

// outcome is a plan without random IDs: creations as "slot N" or "node ID",
// updates as "ID desired[:message]", deletions as IDs, each sorted.
type outcome struct {
	Create []string
	Update []string
	Delete []string
	Wake   time.Time
}

func summarize(p Plan) outcome {
	var o outcome
	for _, t := range p.Create {
		if t.NodeID != "" {
			o.Create = append(o.Create, "node "+t.NodeID)
		} else {
			o.Create = append(o.Create, fmt.Sprintf("slot %d", t.Slot))
		}
	}
	for _, t := range p.Update {
		s := t.ID + " " + string(t.DesiredState)
		if t.Status.Message != "" {
			s += ":" + t.Status.Message
		}
		o.Update = append(o.Update, s)
	}
	o.Delete = slices.Clone(p.Delete)
	slices.Sort(o.Create)
	slices.Sort(o.Update)
	slices.Sort(o.Delete)
	o.Wake = p.NextWake
	return o
}

// apply returns the tasks as a store would hold them after p, new tasks
// created at now.
func apply(now time.Time, tasks []*api.Task, p Plan) []*api.Task {
	byID := make(map[string]*api.Task)
	for _, t := range tasks {
		c := *t
		byID[t.ID] = &c
	}
	for _, t := range p.Update {
		c := *t
		byID[t.ID] = &c
	}
	for _, id := range p.Delete {
		delete(byID, id)
	}
	for _, t := range p.Create {
		c := *t
		c.Meta.CreatedAt = now
		byID[t.ID] = &c
	}
	var out []*api.Task
	for _, t := range byID {
		out = append(out, t)
	}
	slices.SortFunc(out, olderFirst)
	return out
}

// checkConverged asserts that the state after p is stable and never has
// two tasks occupying one slot (one node, for a global service).
func checkConverged(t *testing.T, now time.Time, svc *api.Service, tasks []*api.Task, nodes []*api.Node, p Plan) {
	t.Helper()
	after := apply(now, tasks, p)
	occupied := make(map[string]string)
	for _, task := range after {
		if !occupies(task) {
			continue
		}
		key := fmt.Sprintf("slot %d", task.Slot)
		if svc != nil && svc.Spec.Mode.IsGlobal() {
			key = "node " + task.NodeID
		}
		if other, ok := occupied[key]; ok {
			t.Errorf("%s occupied by %s and %s", key, other, task.ID)
		}
		occupied[key] = task.ID
	}
	again := Reconcile(now, svc, after, nodes)
	if !again.Empty() {
		t.Errorf("second pass not empty: got %+v", summarize(again))
	}
	if !again.NextWake.Equal(p.NextWake) {
		t.Errorf("second pass wake: got %v, want %v", again.NextWake, p.NextWake)
	}
}

type reconcileCase struct {
	name  string
	svc   *api.Service
	tasks []*api.Task
	nodes []*api.Node
	want  outcome
}

func runCases(t *testing.T, cases []reconcileCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			nodes := tc.nodes
			if nodes == nil {
				nodes = readyNodes()
			}
			p := Reconcile(t0, tc.svc, tc.tasks, nodes)
			if got := summarize(p); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got %+v, want %+v", got, tc.want)
			}
			checkConverged(t, t0, tc.svc, tc.tasks, nodes, p)
		})
	}
}

func TestReconcileReplicated(t *testing.T) {
	newImage := func(s *api.TaskSpec) { s.Image = "busybox:2" }
	runCases(t, []reconcileCase{
		{
			name: "new service creates every slot",
			svc:  service(api.ModeReplicated, 3),
			want: outcome{Create: []string{"slot 1", "slot 2", "slot 3"}},
		},
		{
			name:  "converged service writes nothing",
			svc:   service(api.ModeReplicated, 2),
			tasks: []*api.Task{running("a", 1, "n1"), running("b", 2, "n2")},
			want:  outcome{},
		},
		{
			name:  "scale up fills the free slots",
			svc:   service(api.ModeReplicated, 4),
			tasks: []*api.Task{running("a", 1, "n1"), running("c", 3, "n2")},
			want:  outcome{Create: []string{"slot 2", "slot 4"}},
		},
		{
			name: "pending and assigned tasks occupy their slot",
			svc:  service(api.ModeReplicated, 2),
			tasks: []*api.Task{
				taskAt("a", 1, "", api.TaskRunning, api.TaskPending, time.Second),
				taskAt("b", 2, "n1", api.TaskRunning, api.TaskAssigned, time.Second),
			},
			want: outcome{},
		},
		{
			name:  "scale down shuts down the highest slots",
			svc:   service(api.ModeReplicated, 1),
			tasks: []*api.Task{running("a", 1, "n1"), running("b", 2, "n2"), running("c", 3, "n1")},
			want:  outcome{Update: []string{"b shutdown", "c shutdown"}},
		},
		{
			name: "scale down deletes stopped tasks of removed slots",
			svc:  service(api.ModeReplicated, 1),
			tasks: []*api.Task{
				running("a", 1, "n1"),
				taskAt("b", 2, "n2", api.TaskShutdown, api.TaskShutdown, time.Minute),
				taskAt("c", 3, "", api.TaskShutdown, api.TaskPending, time.Minute),
				taskAt("d", 3, "n1", api.TaskShutdown, api.TaskRunning, time.Minute),
			},
			want: outcome{Delete: []string{"b", "c"}},
		},
		{
			name:  "node down: shut down and replaced in the same slot",
			svc:   service(api.ModeReplicated, 2),
			tasks: []*api.Task{running("a", 1, "ndown"), running("b", 2, "n1")},
			want:  outcome{Create: []string{"slot 1"}, Update: []string{"a shutdown:node down"}},
		},
		{
			name:  "node removed: shut down and replaced",
			svc:   service(api.ModeReplicated, 1),
			tasks: []*api.Task{running("a", 1, "gone")},
			want:  outcome{Create: []string{"slot 1"}, Update: []string{"a shutdown:node removed"}},
		},
		{
			name:  "node drained: shut down and replaced",
			svc:   service(api.ModeReplicated, 1),
			tasks: []*api.Task{running("a", 1, "ndrain")},
			want:  outcome{Create: []string{"slot 1"}, Update: []string{"a shutdown:node drained"}},
		},
		{
			name:  "node paused: task left alone",
			svc:   service(api.ModeReplicated, 1),
			tasks: []*api.Task{running("a", 1, "npause")},
			want:  outcome{},
		},
		{
			name: "stale task on a node that came back is not counted",
			svc:  service(api.ModeReplicated, 1),
			tasks: []*api.Task{
				taskAt("old", 1, "n1", api.TaskShutdown, api.TaskRunning, time.Hour),
				running("new", 1, "n2"),
			},
			want: outcome{},
		},
		{
			name:  "two tasks occupying one slot: the newest stays",
			svc:   service(api.ModeReplicated, 1),
			tasks: []*api.Task{running("old", 1, "n1", finishedAgo(0)), taskAt("new", 1, "n2", api.TaskRunning, api.TaskRunning, time.Second)},
			want:  outcome{Update: []string{"old shutdown"}},
		},
		{
			name: "spec change with parallelism 0 replaces every task",
			svc:  service(api.ModeReplicated, 2, allAtOnce, func(s *api.Service) { s.Spec.Task.Image = "busybox:2"; s.Meta.Version = 20 }),
			tasks: []*api.Task{
				running("a", 1, "n1"),
				taskAt("b", 2, "", api.TaskRunning, api.TaskPending, time.Second),
			},
			want: outcome{Create: []string{"slot 1", "slot 2"}, Update: []string{"a shutdown", "b shutdown"}},
		},
		{
			name:  "a network added to the service replaces its tasks",
			svc:   service(api.ModeReplicated, 1, func(s *api.Service) { s.Spec.Networks = []string{"net1"}; s.Meta.Version = 20 }),
			tasks: []*api.Task{running("a", 1, "n1")},
			want:  outcome{Create: []string{"slot 1"}, Update: []string{"a shutdown"}},
		},
		{
			name: "a task attached to the service's networks is kept",
			svc:  service(api.ModeReplicated, 1, func(s *api.Service) { s.Spec.Networks = []string{"net1"}; s.Meta.Version = 20 }),
			tasks: []*api.Task{running("a", 1, "n1", func(t *api.Task) {
				t.Networks = []api.NetworkAttachment{{NetworkID: "net1", Addr: "10.10.0.2/24"}}
			})},
			want: outcome{},
		},
		{
			name:  "an unallocated pending task follows the new networks",
			svc:   service(api.ModeReplicated, 1, func(s *api.Service) { s.Spec.Networks = []string{"net1"}; s.Meta.Version = 20 }),
			tasks: []*api.Task{taskAt("a", 1, "", api.TaskRunning, api.TaskPending, time.Second)},
			want:  outcome{},
		},
		{
			name:  "new version with the same spec keeps tasks",
			svc:   service(api.ModeReplicated, 1, func(s *api.Service) { s.Meta.Version = 20 }),
			tasks: []*api.Task{running("a", 1, "n1")},
			want:  outcome{},
		},
		{
			name:  "task already on the new spec is kept",
			svc:   service(api.ModeReplicated, 1, func(s *api.Service) { s.Spec.Task.Image = "busybox:2"; s.Meta.Version = 20 }),
			tasks: []*api.Task{running("a", 1, "n1", withSpec(newImage, 20))},
			want:  outcome{},
		},
		{
			name: "history keeps five tasks per slot, deleting the oldest stopped",
			svc:  service(api.ModeReplicated, 2),
			tasks: []*api.Task{
				taskAt("h1", 1, "n1", api.TaskShutdown, api.TaskFailed, 7*time.Minute),
				taskAt("h2", 1, "n1", api.TaskShutdown, api.TaskRunning, 6*time.Minute), // still stopping
				taskAt("h3", 1, "n1", api.TaskShutdown, api.TaskFailed, 5*time.Minute),
				taskAt("h4", 1, "n1", api.TaskShutdown, api.TaskFailed, 4*time.Minute),
				taskAt("h5", 1, "n1", api.TaskShutdown, api.TaskFailed, 3*time.Minute),
				taskAt("h6", 1, "n1", api.TaskShutdown, api.TaskFailed, 2*time.Minute),
				running("cur", 1, "n1"),
				taskAt("other", 2, "n1", api.TaskShutdown, api.TaskFailed, 9*time.Minute),
				running("cur2", 2, "n1"),
			},
			nodes: readyNodes(),
			want:  outcome{Delete: []string{"h1", "h3"}},
		},
	})
}

func TestRestartDelay(t *testing.T) {
	five, zero, long := 5*time.Second, time.Duration(0), 10*time.Minute
	tests := []struct {
		name       string
		delay      *time.Duration
		quickExits uint64
		min, max   time.Duration // the jitter adds up to 10 %
	}{
		{"unset, first exit", nil, 1, five, five},
		{"unset, after a long run", nil, 0, five, five},
		{"unset, second in a row", nil, 2, 10 * time.Second, 11 * time.Second},
		{"unset, third", nil, 3, 20 * time.Second, 22 * time.Second},
		{"unset, sixth", nil, 6, 160 * time.Second, 176 * time.Second},
		{"unset, seventh capped", nil, 7, MaxRestartDelay, MaxRestartDelay},
		{"unset, a hundredth capped", nil, 100, MaxRestartDelay, MaxRestartDelay},
		{"explicit 0, first exit at once", &zero, 1, 0, 0},
		{"explicit 0, second from 1 s", &zero, 2, 2 * time.Second, 2200 * time.Millisecond},
		{"explicit 5 s, third", &five, 3, 20 * time.Second, 22 * time.Second},
		{"longer than the cap stays", &long, 5, long, long},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, id := range []string{"a", "task-2", "zz9"} {
				task := &api.Task{ID: id, Spec: api.TaskSpec{Restart: api.RestartPolicy{Condition: api.RestartAny, Delay: tt.delay}}}
				got := RestartDelay(task, tt.quickExits)
				if got < tt.min || got > tt.max {
					t.Errorf("task %s: got %v, want %v to %v", id, got, tt.min, tt.max)
				}
				if again := RestartDelay(task, tt.quickExits); again != got {
					t.Errorf("task %s: got %v, then %v: want the same (pure)", id, got, again)
				}
			}
		})
	}
}

func TestQuickExits(t *testing.T) {
	tests := []struct {
		name    string
		started time.Duration // before t0; 0: never started
		prior   uint64
		want    uint64
	}{
		{"never started", 0, 0, 1},
		{"never started, after two", 0, 2, 3},
		{"ran 10 s", 10 * time.Second, 4, 5},
		{"ran a minute", QuickRun, 4, 0},
		{"ran an hour", time.Hour, 9, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			task := &api.Task{ID: "a", QuickExits: tt.prior, Status: api.TaskStatus{State: api.TaskFailed, Timestamp: t0}}
			if tt.started > 0 {
				task.Status.StartedAt = t0.Add(-tt.started)
			}
			if got := QuickExits(task); got != tt.want {
				t.Errorf("got %d, want %d", got, tt.want)
			}
		})
	}
}

// The replacement of a quick exit carries the count; others start at 0.
func TestReconcileCarriesQuickExits(t *testing.T) {
	quick := taskAt("a", 1, "n1", api.TaskRunning, api.TaskFailed, time.Hour, func(t *api.Task) {
		t.QuickExits = 1
		t.Status.StartedAt = t0.Add(-time.Hour)
		t.Status.Timestamp = t0.Add(-time.Hour + time.Second)
	})
	long := taskAt("b", 2, "n1", api.TaskRunning, api.TaskFailed, time.Hour, func(t *api.Task) {
		t.QuickExits = 3
		t.Status.StartedAt = t0.Add(-time.Hour)
		t.Status.Timestamp = t0.Add(-time.Minute)
	})
	p := Reconcile(t0, service(api.ModeReplicated, 3), []*api.Task{quick, long}, readyNodes())
	got := map[uint64]uint64{}
	for _, c := range p.Create {
		got[c.Slot] = c.QuickExits
	}
	if want := map[uint64]uint64{1: 2, 2: 0, 3: 0}; !maps.Equal(got, want) {
		t.Errorf("quick exits of the new tasks by slot: got %v, want %v", got, want)
	}
}

func TestReconcileRestart(t *testing.T) {
	cases := []reconcileCase{
		{
			name:  "any: failed task replaced",
			svc:   service(api.ModeReplicated, 1),
			tasks: []*api.Task{taskAt("a", 1, "n1", api.TaskRunning, api.TaskFailed, 5*time.Second)},
			want:  outcome{Create: []string{"slot 1"}, Update: []string{"a shutdown"}},
		},
		{
			name:  "any: complete task replaced",
			svc:   service(api.ModeReplicated, 1),
			tasks: []*api.Task{taskAt("a", 1, "n1", api.TaskRunning, api.TaskComplete, 5*time.Second)},
			want:  outcome{Create: []string{"slot 1"}, Update: []string{"a shutdown"}},
		},
		{
			name:  "on-failure: failed task replaced",
			svc:   service(api.ModeReplicated, 1, restart(api.RestartOnFailure, 0, 0)),
			tasks: []*api.Task{taskAt("a", 1, "n1", api.TaskRunning, api.TaskFailed, time.Second, withTaskRestart(api.RestartOnFailure, 0, 0))},
			want:  outcome{Create: []string{"slot 1"}, Update: []string{"a shutdown"}},
		},
		{
			name:  "on-failure: rejected task replaced",
			svc:   service(api.ModeReplicated, 1, restart(api.RestartOnFailure, 0, 0)),
			tasks: []*api.Task{taskAt("a", 1, "n1", api.TaskRunning, api.TaskRejected, time.Second, withTaskRestart(api.RestartOnFailure, 0, 0))},
			want:  outcome{Create: []string{"slot 1"}, Update: []string{"a shutdown"}},
		},
		{
			name:  "on-failure: complete task kept done, slot not refilled",
			svc:   service(api.ModeReplicated, 1, restart(api.RestartOnFailure, 0, 0)),
			tasks: []*api.Task{taskAt("a", 1, "n1", api.TaskRunning, api.TaskComplete, time.Second, withTaskRestart(api.RestartOnFailure, 0, 0))},
			want:  outcome{Update: []string{"a complete"}},
		},
		{
			name:  "none: failed task not replaced",
			svc:   service(api.ModeReplicated, 2, restart(api.RestartNone, 0, 0)),
			tasks: []*api.Task{taskAt("a", 1, "n1", api.TaskRunning, api.TaskFailed, time.Second, withTaskRestart(api.RestartNone, 0, 0))},
			want:  outcome{Create: []string{"slot 2"}, Update: []string{"a complete"}},
		},
		{
			name: "none: done slot stays filled after the agent reports shutdown",
			svc:  service(api.ModeReplicated, 1, restart(api.RestartNone, 0, 0)),
			tasks: []*api.Task{taskAt("a", 1, "n1", api.TaskComplete, api.TaskShutdown, time.Second,
				withTaskRestart(api.RestartNone, 0, 0))},
			want: outcome{},
		},
		{
			name: "none: scaling below a done slot releases it",
			svc:  service(api.ModeReplicated, 1, restart(api.RestartNone, 0, 0)),
			tasks: []*api.Task{
				running("a", 1, "n1", withTaskRestart(api.RestartNone, 0, 0)),
				taskAt("b", 2, "n1", api.TaskComplete, api.TaskComplete, time.Second, withTaskRestart(api.RestartNone, 0, 0)),
			},
			want: outcome{Delete: []string{"b"}},
		},
		{
			name: "none: spec change reruns a done slot",
			svc:  service(api.ModeReplicated, 1, restart(api.RestartNone, 0, 0), func(s *api.Service) { s.Spec.Task.Image = "x"; s.Meta.Version = 20 }),
			tasks: []*api.Task{taskAt("a", 1, "n1", api.TaskComplete, api.TaskComplete, time.Second,
				withTaskRestart(api.RestartNone, 0, 0))},
			want: outcome{Create: []string{"slot 1"}, Update: []string{"a shutdown"}},
		},
		{
			name:  "default delay is Swarm's 5 s",
			svc:   service(api.ModeReplicated, 1),
			tasks: []*api.Task{taskAt("a", 1, "n1", api.TaskRunning, api.TaskFailed, time.Second)},
			want:  outcome{Wake: t0.Add(4 * time.Second)},
		},
		{
			name:  "explicit 0 restarts at once",
			svc:   service(api.ModeReplicated, 1, restart(api.RestartAny, 0, 0)),
			tasks: []*api.Task{taskAt("a", 1, "n1", api.TaskRunning, api.TaskFailed, 0, withTaskRestart(api.RestartAny, 0, 0))},
			want:  outcome{Create: []string{"slot 1"}, Update: []string{"a shutdown"}},
		},
		{
			name: "third quick exit in a row: backed off",
			svc:  service(api.ModeReplicated, 1),
			tasks: []*api.Task{taskAt("a", 1, "n1", api.TaskRunning, api.TaskFailed, time.Minute, finishedAgo(11*time.Second),
				func(t *api.Task) { t.QuickExits = 2 })},
			want: outcome{Wake: t0.Add(RestartDelay(&api.Task{ID: "a"}, 3) - 11*time.Second)},
		},
		{
			name: "a long run resets the backoff",
			svc:  service(api.ModeReplicated, 1),
			tasks: []*api.Task{taskAt("a", 1, "n1", api.TaskRunning, api.TaskFailed, time.Hour, finishedAgo(6*time.Second),
				func(t *api.Task) { t.QuickExits = 7; t.Status.StartedAt = t0.Add(-time.Hour) })},
			want: outcome{Create: []string{"slot 1"}, Update: []string{"a shutdown"}},
		},
		{
			name: "delay not elapsed: wake at finish plus delay",
			svc:  service(api.ModeReplicated, 1, restart(api.RestartAny, 5*time.Second, 0)),
			tasks: []*api.Task{taskAt("a", 1, "n1", api.TaskRunning, api.TaskFailed, time.Minute,
				withTaskRestart(api.RestartAny, 5*time.Second, 0), finishedAgo(2*time.Second))},
			want: outcome{Wake: t0.Add(3 * time.Second)},
		},
		{
			name: "delay elapsed: replaced",
			svc:  service(api.ModeReplicated, 1, restart(api.RestartAny, 5*time.Second, 0)),
			tasks: []*api.Task{taskAt("a", 1, "n1", api.TaskRunning, api.TaskFailed, time.Minute,
				withTaskRestart(api.RestartAny, 5*time.Second, 0), finishedAgo(5*time.Second))},
			want: outcome{Create: []string{"slot 1"}, Update: []string{"a shutdown"}},
		},
		{
			name: "delay skipped on a down node",
			svc:  service(api.ModeReplicated, 1, restart(api.RestartAny, time.Hour, 0)),
			tasks: []*api.Task{taskAt("a", 1, "ndown", api.TaskRunning, api.TaskFailed, time.Minute,
				withTaskRestart(api.RestartAny, time.Hour, 0), finishedAgo(time.Second))},
			want: outcome{Create: []string{"slot 1"}, Update: []string{"a shutdown"}},
		},
		{
			name: "earliest wake over slots",
			svc:  service(api.ModeReplicated, 2, restart(api.RestartAny, 10*time.Second, 0)),
			tasks: []*api.Task{
				taskAt("a", 1, "n1", api.TaskRunning, api.TaskFailed, time.Minute, withTaskRestart(api.RestartAny, 10*time.Second, 0), finishedAgo(time.Second)),
				taskAt("b", 2, "n1", api.TaskRunning, api.TaskFailed, time.Minute, withTaskRestart(api.RestartAny, 10*time.Second, 0), finishedAgo(4*time.Second)),
			},
			want: outcome{Wake: t0.Add(6 * time.Second)},
		},
	}
	policy := withTaskRestart(api.RestartAny, 0, 2)
	oldSpec := withSpec(func(s *api.TaskSpec) { s.Image = "old" }, 3)
	cases = append(cases,
		reconcileCase{
			name: "max attempts reached: not replaced",
			svc:  service(api.ModeReplicated, 1, restart(api.RestartAny, 0, 2)),
			tasks: []*api.Task{
				taskAt("a", 1, "n1", api.TaskShutdown, api.TaskFailed, 3*time.Minute, policy),
				taskAt("b", 1, "n1", api.TaskShutdown, api.TaskFailed, 2*time.Minute, policy),
				taskAt("c", 1, "n1", api.TaskRunning, api.TaskFailed, time.Minute, policy),
			},
			want: outcome{Update: []string{"c complete"}},
		},
		reconcileCase{
			name: "max attempts not reached: replaced",
			svc:  service(api.ModeReplicated, 1, restart(api.RestartAny, 0, 2)),
			tasks: []*api.Task{
				taskAt("a", 1, "n1", api.TaskShutdown, api.TaskFailed, 3*time.Minute, policy),
				taskAt("b", 1, "n1", api.TaskRunning, api.TaskFailed, 2*time.Minute, policy),
			},
			want: outcome{Create: []string{"slot 1"}, Update: []string{"b shutdown"}},
		},
		reconcileCase{
			name: "max attempts within a window: older exits do not count",
			svc:  service(api.ModeReplicated, 1, restart(api.RestartAny, 0, 2), withWindow(150*time.Second)),
			tasks: []*api.Task{
				taskAt("a", 1, "n1", api.TaskShutdown, api.TaskFailed, 3*time.Minute, policy, taskWindow(150*time.Second)),
				taskAt("b", 1, "n1", api.TaskShutdown, api.TaskFailed, 2*time.Minute, policy, taskWindow(150*time.Second)),
				taskAt("c", 1, "n1", api.TaskRunning, api.TaskFailed, time.Minute, policy, taskWindow(150*time.Second)),
			},
			want: outcome{Create: []string{"slot 1"}, Update: []string{"c shutdown"}},
		},
		reconcileCase{
			name: "max attempts within a window: reached",
			svc:  service(api.ModeReplicated, 1, restart(api.RestartAny, 0, 2), withWindow(200*time.Second)),
			tasks: []*api.Task{
				taskAt("a", 1, "n1", api.TaskShutdown, api.TaskFailed, 3*time.Minute, policy, taskWindow(200*time.Second)),
				taskAt("b", 1, "n1", api.TaskShutdown, api.TaskFailed, 2*time.Minute, policy, taskWindow(200*time.Second)),
				taskAt("c", 1, "n1", api.TaskRunning, api.TaskFailed, time.Minute, policy, taskWindow(200*time.Second)),
			},
			want: outcome{Update: []string{"c complete"}},
		},
		reconcileCase{
			name: "max attempts count only tasks of the same spec",
			svc:  service(api.ModeReplicated, 1, restart(api.RestartAny, 0, 2)),
			tasks: []*api.Task{
				taskAt("a", 1, "n1", api.TaskShutdown, api.TaskFailed, 4*time.Minute, policy, oldSpec),
				taskAt("b", 1, "n1", api.TaskShutdown, api.TaskFailed, 3*time.Minute, policy, oldSpec),
				taskAt("c", 1, "n1", api.TaskShutdown, api.TaskFailed, 2*time.Minute, policy),
				taskAt("d", 1, "n1", api.TaskRunning, api.TaskFailed, time.Minute, policy),
			},
			want: outcome{Create: []string{"slot 1"}, Update: []string{"d shutdown"}},
		},
		reconcileCase{
			name: "max attempts above the history limit keep more history",
			svc:  service(api.ModeReplicated, 1, restart(api.RestartAny, 0, 7)),
			tasks: func() []*api.Task {
				var ts []*api.Task
				for i := range 8 {
					ts = append(ts, taskAt(fmt.Sprintf("h%d", i), 1, "n1", api.TaskShutdown, api.TaskFailed,
						time.Duration(10-i)*time.Minute, withTaskRestart(api.RestartAny, 0, 7)))
				}
				return append(ts, running("cur", 1, "n1", withTaskRestart(api.RestartAny, 0, 7)))
			}(),
			want: outcome{Delete: []string{"h0"}},
		},
	)
	runCases(t, cases)
}

func TestReconcileGlobal(t *testing.T) {
	constrained := func(s *api.Service) { s.Spec.Task.Placement.Constraints = []string{"node.labels.zone==a"} }
	runCases(t, []reconcileCase{
		{
			name: "one task per ready active node",
			svc:  service(api.ModeGlobal, 0),
			want: outcome{Create: []string{"node n1", "node n2"}},
		},
		{
			name:  "new node joins",
			svc:   service(api.ModeGlobal, 0),
			tasks: []*api.Task{running("a", 0, "n1")},
			want:  outcome{Create: []string{"node n2"}},
		},
		{
			name:  "node down: shut down, not replaced",
			svc:   service(api.ModeGlobal, 0),
			tasks: []*api.Task{running("a", 0, "n1"), running("b", 0, "n2"), running("c", 0, "ndown")},
			want:  outcome{Update: []string{"c shutdown:node down"}},
		},
		{
			name:  "node drained: shut down, not replaced",
			svc:   service(api.ModeGlobal, 0),
			tasks: []*api.Task{running("a", 0, "n1"), running("b", 0, "n2"), running("c", 0, "ndrain")},
			want:  outcome{Update: []string{"c shutdown:node drained"}},
		},
		{
			name: "node removed: its tasks deleted",
			svc:  service(api.ModeGlobal, 0),
			tasks: []*api.Task{running("a", 0, "n1"), running("b", 0, "n2"), running("c", 0, "gone"),
				taskAt("d", 0, "gone", api.TaskShutdown, api.TaskFailed, time.Hour)},
			want: outcome{Delete: []string{"c", "d"}},
		},
		{
			name:  "paused node keeps its task and gets none",
			svc:   service(api.ModeGlobal, 0),
			tasks: []*api.Task{running("a", 0, "n1"), running("b", 0, "n2"), running("c", 0, "npause")},
			want:  outcome{},
		},
		{
			name: "constraints pick the nodes",
			svc:  service(api.ModeGlobal, 0, constrained),
			nodes: []*api.Node{
				node("n1", api.NodeStateReady, api.AvailabilityActive, "zone", "a"),
				node("n2", api.NodeStateReady, api.AvailabilityActive, "zone", "b"),
				node("n3", api.NodeStateReady, api.AvailabilityActive, "zone", "a"),
			},
			tasks: []*api.Task{running("b", 0, "n2", withSpec(func(s *api.TaskSpec) { constrained(&api.Service{Spec: api.ServiceSpec{Task: *s}}) }, svcVersion)), running("c", 0, "n3")},
			want:  outcome{Create: []string{"node n1"}, Update: []string{"b shutdown:" + MsgConstraints}},
		},
		{
			name:  "finished task restarted on its node",
			svc:   service(api.ModeGlobal, 0),
			tasks: []*api.Task{taskAt("a", 0, "n1", api.TaskRunning, api.TaskFailed, 5*time.Second), running("b", 0, "n2")},
			want:  outcome{Create: []string{"node n1"}, Update: []string{"a shutdown"}},
		},
		{
			name:  "finished task on a paused node waits",
			svc:   service(api.ModeGlobal, 0),
			tasks: []*api.Task{running("a", 0, "n1"), running("b", 0, "n2"), taskAt("c", 0, "npause", api.TaskRunning, api.TaskFailed, time.Second)},
			want:  outcome{},
		},
		{
			name:  "spec change with parallelism 0 replaces on each node",
			svc:   service(api.ModeGlobal, 0, allAtOnce, func(s *api.Service) { s.Spec.Task.Image = "busybox:2"; s.Meta.Version = 20 }),
			tasks: []*api.Task{running("a", 0, "n1"), running("b", 0, "n2")},
			want:  outcome{Create: []string{"node n1", "node n2"}, Update: []string{"a shutdown", "b shutdown"}},
		},
		{
			name: "history per node",
			svc:  service(api.ModeGlobal, 0),
			nodes: []*api.Node{
				node("n1", api.NodeStateReady, api.AvailabilityActive),
			},
			tasks: func() []*api.Task {
				var ts []*api.Task
				for i := range 6 {
					ts = append(ts, taskAt(fmt.Sprintf("h%d", i), 0, "n1", api.TaskShutdown, api.TaskFailed, time.Duration(10-i)*time.Minute))
				}
				return append(ts, running("cur", 0, "n1"))
			}(),
			want: outcome{Delete: []string{"h0", "h1"}},
		},
	})
}

func TestReconcileDeletedService(t *testing.T) {
	runCases(t, []reconcileCase{
		{
			name: "tasks shut down, stopped ones deleted",
			svc:  nil,
			tasks: []*api.Task{
				running("live", 1, "n1"),
				taskAt("failed", 2, "n1", api.TaskRunning, api.TaskFailed, time.Minute),
				taskAt("pending", 3, "", api.TaskRunning, api.TaskPending, time.Minute),
				running("ondown", 4, "ndown"),
				running("ongone", 5, "gone"),
				taskAt("stopping", 6, "n2", api.TaskShutdown, api.TaskRunning, time.Minute),
				taskAt("stopped", 6, "n2", api.TaskShutdown, api.TaskShutdown, time.Minute),
			},
			want: outcome{
				Update: []string{"live shutdown"},
				Delete: []string{"failed", "ondown", "ongone", "pending", "stopped"},
			},
		},
	})
}

func TestReconcileNewTaskFields(t *testing.T) {
	svc := service(api.ModeReplicated, 1, func(s *api.Service) { s.Spec.Task.Command = []string{"sleep", "1"} })
	p := Reconcile(t0, svc, nil, readyNodes())
	if len(p.Create) != 1 {
		t.Fatalf("got %d created tasks, want 1", len(p.Create))
	}
	got := p.Create[0]
	want := &api.Task{
		ID: got.ID, ServiceID: "svc", ServiceName: "web", Slot: 1, Spec: svc.Spec.Task, SpecVersion: svcVersion,
		DesiredState: api.TaskRunning,
		Status:       api.TaskStatus{State: api.TaskPending, Timestamp: t0, Message: MsgPending},
	}
	if len(got.ID) != 25 {
		t.Errorf("got ID %q, want a 25-character ID", got.ID)
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %+v, want %+v", got, want)
	}
	svc.Spec.Task.Command[0] = "changed"
	if got.Spec.Command[0] != "sleep" {
		t.Errorf("new task shares its command with the service spec")
	}

	g := Reconcile(t0, service(api.ModeGlobal, 0), nil, []*api.Node{node("n1", api.NodeStateReady, api.AvailabilityActive)})
	if len(g.Create) != 1 || g.Create[0].NodeID != "n1" || g.Create[0].Slot != 0 {
		t.Errorf("global create: got %+v, want one task on n1 in slot 0", g.Create)
	}
}

func TestReconcileDoesNotModifyInput(t *testing.T) {
	tasks := []*api.Task{running("a", 1, "ndown"), running("b", 2, "n1")}
	before := fmt.Sprintf("%+v %+v", *tasks[0], *tasks[1])
	Reconcile(t0, service(api.ModeReplicated, 1), tasks, readyNodes())
	if after := fmt.Sprintf("%+v %+v", *tasks[0], *tasks[1]); after != before {
		t.Errorf("input changed: got %s, want %s", after, before)
	}
}

// TestReconcileDelayThenCreate walks a delayed restart through time: no
// replacement before the wake, a replacement at it.
func TestReconcileDelayThenCreate(t *testing.T) {
	svc := service(api.ModeReplicated, 1, restart(api.RestartAny, 10*time.Second, 0))
	failed := taskAt("a", 1, "n1", api.TaskRunning, api.TaskFailed, time.Minute,
		withTaskRestart(api.RestartAny, 10*time.Second, 0), finishedAgo(0))
	tasks := []*api.Task{failed}
	p := Reconcile(t0, svc, tasks, readyNodes())
	if !p.Empty() || !p.NextWake.Equal(t0.Add(10*time.Second)) {
		t.Fatalf("at finish: got %+v, want nothing and a wake at +10s", summarize(p))
	}
	p = Reconcile(t0.Add(9*time.Second), svc, tasks, readyNodes())
	if !p.Empty() {
		t.Fatalf("before the wake: got %+v, want nothing", summarize(p))
	}
	at := p.NextWake
	p = Reconcile(at, svc, tasks, readyNodes())
	want := outcome{Create: []string{"slot 1"}, Update: []string{"a shutdown"}}
	if got := summarize(p); !reflect.DeepEqual(got, want) {
		t.Fatalf("at the wake: got %+v, want %+v", got, want)
	}
	checkConverged(t, at, svc, tasks, readyNodes(), p)
}
