package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/shoal-dev/shoal/agent/exec"
	"github.com/shoal-dev/shoal/agent/exec/exectest"
	"github.com/shoal-dev/shoal/api"
	"github.com/shoal-dev/shoal/clock"
)

var epoch = time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)

// recorder collects the worker's reports; the worker calls it from its
// runner goroutines.
type recorder struct {
	mu  sync.Mutex
	got []api.TaskStatusUpdate
}

func (r *recorder) report(u api.TaskStatusUpdate) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.got = append(r.got, u)
}

func (r *recorder) updates(id string) []api.TaskStatusUpdate {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []api.TaskStatusUpdate
	for _, u := range r.got {
		if u.TaskID == id {
			out = append(out, u)
		}
	}
	return out
}

func (r *recorder) states(id string) []api.TaskState {
	var out []api.TaskState
	for _, u := range r.updates(id) {
		out = append(out, u.Status.State)
	}
	return out
}

func (r *recorder) last(id string) api.TaskStatusUpdate {
	us := r.updates(id)
	if len(us) == 0 {
		return api.TaskStatusUpdate{}
	}
	return us[len(us)-1]
}

// waitFor polls cond until it holds or a deadline passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

func discardLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

type workerHarness struct {
	ctx    context.Context
	cancel context.CancelFunc
	fake   *exectest.Fake
	rec    *recorder
	clk    *clock.Fake
	w      *Worker
}

func newWorkerHarness(t *testing.T) *workerHarness {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	h := &workerHarness{ctx: ctx, cancel: cancel, fake: exectest.New(t.TempDir()), rec: &recorder{}, clk: clock.NewFake(epoch)}
	h.w = NewWorker(h.fake, h.rec.report, h.clk, Limits{}, discardLogger())
	t.Cleanup(func() {
		cancel()
		// Let the runners see the end of ctx before the test's goroutine
		// checker (and -race) look at them.
		waitFor(t, "runners to end", func() bool { return h.runners() == 0 })
	})
	return h
}

func (h *workerHarness) runners() int {
	h.w.mu.Lock()
	defer h.w.mu.Unlock()
	return len(h.w.runners)
}

// effects returns the recorded calls that change containers, in order.
func (h *workerHarness) effects() []string {
	var out []string
	for _, op := range h.fake.Ops() {
		if op == "list" || strings.HasPrefix(op, "wait ") {
			continue
		}
		out = append(out, op)
	}
	return out
}

func (h *workerHarness) waitState(t *testing.T, id string, s api.TaskState) {
	t.Helper()
	waitFor(t, "task "+id+" to report "+string(s), func() bool { return slices.Contains(h.rec.states(id), s) })
}

func (h *workerHarness) stops(id string) []exectest.Call {
	var out []exectest.Call
	for _, c := range h.fake.Calls() {
		if c.Op == "stop" && c.TaskID == id {
			out = append(out, c)
		}
	}
	return out
}

func newTask(id string, desired, status api.TaskState) *api.Task {
	return &api.Task{
		ID: id, ServiceID: "svc1", ServiceName: "web", Slot: 1,
		Spec:         api.TaskSpec{Image: "busybox"},
		DesiredState: desired,
		Status:       api.TaskStatus{State: status},
	}
}

func with(t *api.Task, desired, status api.TaskState) *api.Task {
	c := *t
	c.DesiredState, c.Status.State = desired, status
	return &c
}

var startStates = []api.TaskState{api.TaskAccepted, api.TaskPreparing, api.TaskStarting, api.TaskRunning}

func TestWorkerRunsTaskToExit(t *testing.T) {
	tests := []struct {
		name      string
		code      int
		wantState api.TaskState
		wantCode  int
		wantErr   string
	}{
		{"exit 0 completes", 0, api.TaskComplete, 0, ""},
		{"exit 3 fails", 3, api.TaskFailed, 3, "task: non-zero exit (3)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newWorkerHarness(t)
			tk := newTask("t1", api.TaskRunning, api.TaskAssigned)
			h.w.Reconcile(h.ctx, []*api.Task{tk})
			h.waitState(t, "t1", api.TaskRunning)

			if got := h.rec.states("t1"); !slices.Equal(got, startStates) {
				t.Errorf("reports: got %v, want %v", got, startStates)
			}
			if got, want := h.effects(), []string{"prepare t1", "start t1"}; !slices.Equal(got, want) {
				t.Errorf("executor calls: got %v, want %v", got, want)
			}
			for _, u := range h.rec.updates("t1") {
				if !u.Status.Timestamp.Equal(epoch) || u.Status.ContainerID != "t1" {
					t.Errorf("report %s: got timestamp %v container %q, want %v and %q",
						u.Status.State, u.Status.Timestamp, u.Status.ContainerID, epoch, "t1")
				}
			}
			if prepared, ok := h.fake.Task("t1"); !ok || prepared.Spec.Image != "busybox" {
				t.Errorf("prepared task: got %+v (found %v), want image busybox", prepared, ok)
			}

			if err := h.fake.Exit("t1", tt.code); err != nil {
				t.Fatalf("Exit: %v", err)
			}
			h.waitState(t, "t1", tt.wantState)
			want := append(slices.Clone(startStates), tt.wantState)
			if got := h.rec.states("t1"); !slices.Equal(got, want) {
				t.Errorf("reports: got %v, want %v", got, want)
			}
			last := h.rec.last("t1").Status
			if last.ExitCode != tt.wantCode || last.Err != tt.wantErr {
				t.Errorf("final status: got exit code %d err %q, want %d %q", last.ExitCode, last.Err, tt.wantCode, tt.wantErr)
			}
			if !last.StartedAt.Equal(epoch) {
				t.Errorf("final status: got started at %v, want %v (when it reported running)", last.StartedAt, epoch)
			}
			if first := h.rec.updates("t1")[0].Status; !first.StartedAt.IsZero() {
				t.Errorf("accepted status: got started at %v, want zero", first.StartedAt)
			}
			waitFor(t, "the runner to end", func() bool { return h.runners() == 0 })
		})
	}
}

func TestWorkerReconcileTwiceStartsOnce(t *testing.T) {
	h := newWorkerHarness(t)
	tk := newTask("t1", api.TaskRunning, api.TaskAssigned)
	h.w.Reconcile(h.ctx, []*api.Task{tk})
	h.waitState(t, "t1", api.TaskRunning)
	h.w.Reconcile(h.ctx, []*api.Task{with(tk, api.TaskRunning, api.TaskRunning)})
	h.w.Reconcile(h.ctx, []*api.Task{with(tk, api.TaskRunning, api.TaskRunning)})
	if got, want := h.effects(), []string{"prepare t1", "start t1"}; !slices.Equal(got, want) {
		t.Errorf("executor calls: got %v, want %v", got, want)
	}
	if got := h.rec.states("t1"); !slices.Equal(got, startStates) {
		t.Errorf("reports: got %v, want %v", got, startStates)
	}
}

func TestWorkerStopsOnShutdown(t *testing.T) {
	tests := []struct {
		name      string
		grace     time.Duration
		wantGrace time.Duration
	}{
		{"default grace", 0, 10 * time.Second},
		{"task grace", 3 * time.Second, 3 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newWorkerHarness(t)
			tk := newTask("t1", api.TaskRunning, api.TaskAssigned)
			tk.Spec.StopGracePeriod = tt.grace
			h.w.Reconcile(h.ctx, []*api.Task{tk})
			h.waitState(t, "t1", api.TaskRunning)

			h.w.Reconcile(h.ctx, []*api.Task{with(tk, api.TaskShutdown, api.TaskRunning)})
			h.waitState(t, "t1", api.TaskShutdown)
			waitFor(t, "the runner to end", func() bool { return h.runners() == 0 })

			stops := h.stops("t1")
			if len(stops) != 1 || stops[0].Grace != tt.wantGrace {
				t.Errorf("stop calls: got %v, want one with grace %v", stops, tt.wantGrace)
			}
			want := append(slices.Clone(startStates), api.TaskShutdown)
			if got := h.rec.states("t1"); !slices.Equal(got, want) {
				t.Errorf("reports: got %v, want %v (the stop's exit is no failure)", got, want)
			}
			if got, want := h.effects(), []string{"prepare t1", "start t1", "stop t1"}; !slices.Equal(got, want) {
				t.Errorf("executor calls: got %v, want %v (a task still assigned keeps its container)", got, want)
			}
			if st, ok := h.fake.Status("t1"); !ok || st.State != exec.StateExited {
				t.Errorf("container: got %+v (found %v), want exited", st, ok)
			}
		})
	}
}

// A running task on a network (a load-balancer backend) keeps running for
// lbDrain after the cluster stops wanting it, so every node drops it from
// its rules before it stops answering; a task never running is not drained.
func TestWorkerDrainsBackendBeforeStop(t *testing.T) {
	h := newWorkerHarness(t)
	tk := newTask("t1", api.TaskRunning, api.TaskAssigned)
	tk.Networks = []api.NetworkAttachment{{NetworkID: "ingress", Addr: "10.0.0.2/24"}}
	h.w.Reconcile(h.ctx, []*api.Task{tk})
	h.waitState(t, "t1", api.TaskRunning)
	before := h.clk.Tickers()

	h.w.Reconcile(h.ctx, []*api.Task{with(tk, api.TaskShutdown, api.TaskRunning)})
	waitFor(t, "the drain's ticker", func() bool { return h.clk.Tickers() == before+1 })
	if stops := h.stops("t1"); len(stops) != 0 {
		t.Fatalf("stopped during the drain: %v", stops)
	}
	h.clk.Advance(lbDrain)
	h.waitState(t, "t1", api.TaskShutdown)
	if stops := h.stops("t1"); len(stops) != 1 {
		t.Errorf("stop calls after the drain: got %v, want one", stops)
	}
}

func TestWorkerShutdownBeforeStart(t *testing.T) {
	h := newWorkerHarness(t)
	h.w.Reconcile(h.ctx, []*api.Task{newTask("t1", api.TaskShutdown, api.TaskAssigned)})
	h.waitState(t, "t1", api.TaskShutdown)
	if got, want := h.rec.states("t1"), []api.TaskState{api.TaskShutdown}; !slices.Equal(got, want) {
		t.Errorf("reports: got %v, want %v", got, want)
	}
	if got, want := h.effects(), []string{"stop t1"}; !slices.Equal(got, want) {
		t.Errorf("executor calls: got %v, want %v", got, want)
	}
}

func TestWorkerAdoptsContainer(t *testing.T) {
	tests := []struct {
		name        string
		container   exec.ContainerStatus
		stored      api.TaskState
		wantAdopted []api.TaskState // reports before the process exits
		exit        bool            // Exit the process with 0 after adoption
		wantFinal   api.TaskState
		wantCode    int
	}{
		{
			name:      "running, stored running",
			container: exec.ContainerStatus{TaskID: "t1", State: exec.StateRunning},
			stored:    api.TaskRunning,
			exit:      true, wantFinal: api.TaskComplete,
		},
		{
			name:        "running, stored starting",
			container:   exec.ContainerStatus{TaskID: "t1", State: exec.StateRunning},
			stored:      api.TaskStarting,
			wantAdopted: []api.TaskState{api.TaskRunning},
			exit:        true, wantFinal: api.TaskComplete,
		},
		{
			name:      "exited while the agent was away",
			container: exec.ContainerStatus{TaskID: "t1", State: exec.StateExited, ExitCode: 2},
			stored:    api.TaskRunning,
			wantFinal: api.TaskFailed, wantCode: 2,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newWorkerHarness(t)
			h.fake.Add(tt.container)
			stored := newTask("t1", api.TaskRunning, tt.stored)
			startedAt := epoch // reported running on adoption
			if tt.stored == api.TaskRunning {
				startedAt = epoch.Add(-time.Hour)
				stored.Status.StartedAt = startedAt
			}
			h.w.Reconcile(h.ctx, []*api.Task{stored})
			waitFor(t, "the worker to wait on t1", func() bool { return slices.Contains(h.fake.Ops(), "wait t1") })

			if tt.exit {
				if got := h.rec.states("t1"); !slices.Equal(got, tt.wantAdopted) {
					t.Errorf("reports on adoption: got %v, want %v", got, tt.wantAdopted)
				}
				if err := h.fake.Exit("t1", 0); err != nil {
					t.Fatalf("Exit: %v", err)
				}
			}
			h.waitState(t, "t1", tt.wantFinal)
			want := append(slices.Clone(tt.wantAdopted), tt.wantFinal)
			if got := h.rec.states("t1"); !slices.Equal(got, want) {
				t.Errorf("reports: got %v, want %v", got, want)
			}
			if got := h.rec.last("t1").Status.ExitCode; got != tt.wantCode {
				t.Errorf("exit code: got %d, want %d", got, tt.wantCode)
			}
			if got := h.rec.last("t1").Status.StartedAt; !got.Equal(startedAt) {
				t.Errorf("started at: got %v, want %v", got, startedAt)
			}
			if got := h.effects(); len(got) != 0 {
				t.Errorf("executor calls: got %v, want none (no prepare or start on adoption)", got)
			}
		})
	}
}

func TestWorkerRejectsWhenPrepareFails(t *testing.T) {
	h := newWorkerHarness(t)
	boom := errors.New("pull busybox: registry unreachable")
	h.fake.Fail = func(op, _ string) error {
		if op == "prepare" {
			return boom
		}
		return nil
	}
	h.w.Reconcile(h.ctx, []*api.Task{newTask("t1", api.TaskRunning, api.TaskAssigned)})
	h.waitState(t, "t1", api.TaskRejected)
	waitFor(t, "the runner to end", func() bool { return h.runners() == 0 })

	want := []api.TaskState{api.TaskAccepted, api.TaskPreparing, api.TaskRejected}
	if got := h.rec.states("t1"); !slices.Equal(got, want) {
		t.Errorf("reports: got %v, want %v", got, want)
	}
	if got, want := h.rec.last("t1").Status.Err, "prepare: "+boom.Error(); got != want {
		t.Errorf("err: got %q, want %q", got, want)
	}
	if got, want := h.effects(), []string{"prepare t1"}; !slices.Equal(got, want) {
		t.Errorf("executor calls: got %v, want %v", got, want)
	}
}

func TestWorkerReapsUnassignedContainer(t *testing.T) {
	h := newWorkerHarness(t)
	h.fake.Add(exec.ContainerStatus{TaskID: "old", State: exec.StateRunning})
	h.fake.Add(exec.ContainerStatus{TaskID: "kept", State: exec.StateRunning})
	h.w.Reconcile(h.ctx, []*api.Task{newTask("kept", api.TaskRunning, api.TaskRunning)})

	if stops := h.stops("old"); len(stops) != 1 || stops[0].Grace != defaultStopGrace {
		t.Errorf("stop calls of old: got %v, want one with grace %v", stops, defaultStopGrace)
	}
	var old []string
	for _, op := range h.effects() {
		if op == "stop old" || op == "remove old" {
			old = append(old, op)
		}
	}
	if want := []string{"stop old", "remove old"}; !slices.Equal(old, want) {
		t.Errorf("calls on old: got %v, want %v", old, want)
	}
	if _, ok := h.fake.Status("old"); ok {
		t.Errorf("container old: still there, want removed")
	}
	if st, ok := h.fake.Status("kept"); !ok || st.State != exec.StateRunning {
		t.Errorf("container kept: got %+v (found %v), want running", st, ok)
	}
}

// A task that leaves the assignments while its runner runs it (deleted on
// the managers while the node was cut off) is stopped, then removed.
func TestWorkerStopsTaskDroppedFromAssignments(t *testing.T) {
	h := newWorkerHarness(t)
	tk := newTask("t1", api.TaskRunning, api.TaskAssigned)
	tk.Spec.StopGracePeriod = 2 * time.Second
	h.w.Reconcile(h.ctx, []*api.Task{tk})
	h.waitState(t, "t1", api.TaskRunning)

	h.w.Reconcile(h.ctx, nil)
	waitFor(t, "t1 to be stopped", func() bool { return len(h.stops("t1")) > 0 })
	if stops := h.stops("t1"); stops[0].Grace != 2*time.Second {
		t.Errorf("stop grace: got %v, want %v", stops[0].Grace, 2*time.Second)
	}
	waitFor(t, "the runner to end", func() bool { return h.runners() == 0 })

	h.w.Reconcile(h.ctx, nil)
	if _, ok := h.fake.Status("t1"); ok {
		t.Errorf("container t1: still there, want removed")
	}
	if got := h.effects(); got[len(got)-1] != "remove t1" {
		t.Errorf("executor calls: got %v, want them to end with remove t1", got)
	}
}

func TestWorkerTerminalTaskStartsNoRunner(t *testing.T) {
	for _, state := range []api.TaskState{api.TaskComplete, api.TaskShutdown, api.TaskFailed, api.TaskRejected} {
		t.Run(string(state), func(t *testing.T) {
			h := newWorkerHarness(t)
			h.fake.Add(exec.ContainerStatus{TaskID: "t1", State: exec.StateExited})
			h.w.Reconcile(h.ctx, []*api.Task{newTask("t1", api.TaskShutdown, state)})
			if n := h.runners(); n != 0 {
				t.Errorf("runners: got %d, want 0", n)
			}
			if got := h.rec.states("t1"); len(got) != 0 {
				t.Errorf("reports: got %v, want none", got)
			}
			if got := h.effects(); len(got) != 0 {
				t.Errorf("executor calls: got %v, want none while the task is assigned", got)
			}
			// Once the managers forget the task, its container goes.
			h.w.Reconcile(h.ctx, nil)
			if _, ok := h.fake.Status("t1"); ok {
				t.Errorf("container t1: still there after the task left the assignments, want removed")
			}
		})
	}
}

func TestWorkerLeavesContainersWhenAgentStops(t *testing.T) {
	h := newWorkerHarness(t)
	h.w.Reconcile(h.ctx, []*api.Task{newTask("t1", api.TaskRunning, api.TaskAssigned)})
	h.waitState(t, "t1", api.TaskRunning)
	waitFor(t, "the worker to wait on t1", func() bool { return slices.Contains(h.fake.Ops(), "wait t1") })

	h.cancel()
	waitFor(t, "the runner to end", func() bool { return h.runners() == 0 })

	if got, want := h.effects(), []string{"prepare t1", "start t1"}; !slices.Equal(got, want) {
		t.Errorf("executor calls: got %v, want %v (no stop or remove)", got, want)
	}
	if st, ok := h.fake.Status("t1"); !ok || st.State != exec.StateRunning {
		t.Errorf("container: got %+v (found %v), want still running", st, ok)
	}
	if got := h.rec.states("t1"); !slices.Equal(got, startStates) {
		t.Errorf("reports: got %v, want %v (nothing after the agent stops)", got, startStates)
	}
}

// gate counts the calls inside it and holds each until it is opened once
// or the call's context ends.
type gate struct {
	open chan struct{}

	mu              sync.Mutex
	inside, maxSeen int
	entered         []string
}

func newGate() *gate { return &gate{open: make(chan struct{})} }

func (g *gate) pass(ctx context.Context, what string) error {
	g.mu.Lock()
	g.inside++
	g.maxSeen = max(g.maxSeen, g.inside)
	g.entered = append(g.entered, what)
	g.mu.Unlock()
	defer func() {
		g.mu.Lock()
		g.inside--
		g.mu.Unlock()
	}()
	select {
	case <-g.open:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (g *gate) counts() (inside, maxSeen int, entered []string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.inside, g.maxSeen, slices.Clone(g.entered)
}

// gatedExec is the fake executor with Prepare held at a gate.
type gatedExec struct {
	*exectest.Fake
	prepare *gate
}

func (e *gatedExec) Prepare(ctx context.Context, t *api.Task) error {
	if err := e.prepare.pass(ctx, t.ID); err != nil {
		return err
	}
	return e.Fake.Prepare(ctx, t)
}

// gatedPuller is also an exec.Puller, its pulls held at their own gate.
type gatedPuller struct {
	gatedExec
	pull *gate
}

func (e *gatedPuller) Pull(ctx context.Context, image string) error { return e.pull.pass(ctx, image) }

func newGatedHarness(t *testing.T, e exec.Executor, fake *exectest.Fake, lim Limits) *workerHarness {
	t.Helper()
	h := newWorkerHarness(t)
	h.fake = fake
	h.w = NewWorker(e, h.rec.report, h.clk, lim, discardLogger())
	return h
}

func tasksN(n int) []*api.Task {
	ts := make([]*api.Task, n)
	for i := range ts {
		ts[i] = newTask(fmt.Sprintf("t%02d", i), api.TaskRunning, api.TaskAssigned)
		ts[i].Spec.Image = fmt.Sprintf("img%d", i%3)
	}
	return ts
}

func TestWorkerBoundsStartsAndPulls(t *testing.T) {
	tests := []struct {
		name         string
		lim          Limits
		puller       bool
		wantStarts   int
		wantPulls    int
		wantInStarts []string // the executor calls a task makes, in order
	}{
		{"defaults", Limits{}, false, DefaultMaxConcurrentStarts, 0, []string{"prepare", "start"}},
		{"two starts", Limits{Starts: 2}, false, 2, 0, []string{"prepare", "start"}},
		{"one pull, three starts", Limits{Starts: 3, Pulls: 1}, true, 3, 1, []string{"pull", "prepare", "start"}},
		{"default pulls", Limits{Starts: 1}, true, 1, DefaultMaxConcurrentPulls, []string{"pull", "prepare", "start"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fake := exectest.New(t.TempDir())
			ge := gatedExec{Fake: fake, prepare: newGate()}
			var e exec.Executor = &ge
			var pulls *gate
			if tt.puller {
				gp := &gatedPuller{gatedExec: ge, pull: newGate()}
				pulls, e = gp.pull, gp
			}
			h := newGatedHarness(t, e, fake, tt.lim)
			tasks := tasksN(12)
			h.w.Reconcile(h.ctx, tasks)

			// Open each gate one call at a time, each time it is full:
			// the limit is reached and never passed.
			if pulls != nil {
				for range len(tasks) {
					waitFor(t, "pulls to fill", func() bool {
						inside, _, entered := pulls.counts()
						return inside == min(tt.wantPulls, len(tasks)-len(entered)+inside)
					})
					pulls.open <- struct{}{}
				}
			}
			for range len(tasks) {
				waitFor(t, "starts to fill", func() bool {
					inside, _, entered := ge.prepare.counts()
					return inside > 0 && inside == min(tt.wantStarts, len(tasks)-len(entered)+inside)
				})
				ge.prepare.open <- struct{}{}
			}
			for _, tk := range tasks {
				h.waitState(t, tk.ID, api.TaskRunning)
			}
			if _, got, _ := ge.prepare.counts(); got != tt.wantStarts {
				t.Errorf("most prepares at once: got %d, want %d", got, tt.wantStarts)
			}
			if pulls != nil {
				if _, got, _ := pulls.counts(); got != tt.wantPulls {
					t.Errorf("most pulls at once: got %d, want %d", got, tt.wantPulls)
				}
				if _, _, entered := pulls.counts(); !slices.Contains(entered, "img2") {
					t.Errorf("pulled images: got %v, want each task's image", entered)
				}
			}
			if got := h.rec.states("t00"); !slices.Equal(got, startStates) {
				t.Errorf("reports: got %v, want %v", got, startStates)
			}
		})
	}
}

// A task whose desired state changes while it waits for a place, or while
// it is being prepared, is never started: it reports shutdown.
func TestWorkerShutdownCancelsPendingStart(t *testing.T) {
	tests := []struct {
		name string
		// change is what the managers say next about t00..t03.
		change func(ts []*api.Task) []*api.Task
	}{
		{"desired shutdown", func(ts []*api.Task) []*api.Task {
			out := make([]*api.Task, len(ts))
			for i, tk := range ts {
				out[i] = with(tk, api.TaskShutdown, api.TaskAssigned)
			}
			return out
		}},
		{"dropped from the assignments (service rm)", func([]*api.Task) []*api.Task { return nil }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fake := exectest.New(t.TempDir())
			ge := &gatedExec{Fake: fake, prepare: newGate()}
			h := newGatedHarness(t, ge, fake, Limits{Starts: 1})
			tasks := tasksN(4)
			h.w.Reconcile(h.ctx, tasks)
			// t?? is in Prepare, the three others wait for its place.
			waitFor(t, "one prepare", func() bool { inside, _, _ := ge.prepare.counts(); return inside == 1 })
			for _, tk := range tasks {
				h.waitState(t, tk.ID, api.TaskAccepted)
			}

			h.w.Reconcile(h.ctx, tt.change(tasks))
			for _, tk := range tasks {
				h.waitState(t, tk.ID, api.TaskShutdown)
			}
			waitFor(t, "the runners to end", func() bool { return h.runners() == 0 })
			for _, op := range h.fake.Ops() {
				if strings.HasPrefix(op, "start ") {
					t.Errorf("executor calls: got %v, want no start", h.fake.Ops())
					break
				}
			}
			if _, _, entered := ge.prepare.counts(); len(entered) != 1 {
				t.Errorf("prepares: got %v, want only the first (the others never got a place)", entered)
			}
			for _, tk := range tasks {
				for _, s := range h.rec.states(tk.ID) {
					if s == api.TaskRunning || s == api.TaskRejected {
						t.Errorf("task %s reports %v, want no running and no rejection", tk.ID, h.rec.states(tk.ID))
					}
				}
			}
		})
	}
}
