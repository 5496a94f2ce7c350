package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/shoal-dev/shoal/agent/exec"
	"github.com/shoal-dev/shoal/api"
	"github.com/shoal-dev/shoal/clock"
)

// defaultStopGrace is Swarm's stop grace period.
const defaultStopGrace = 10 * time.Second

// lbDrain is how long a task that receives traffic keeps running after the
// cluster stopped wanting it, before its stop signal: the dispatcher drops
// it from the backends (ingress, VIP, DNS) in the same change, and every
// node's long poll must receive that and reconcile its nftables before the
// container stops answering (issue 10: 1 of 233 requests lost without it).
// Bounded so that service rm is delayed by at most this.
const lbDrain = time.Second

// Defaults of the worker's limits. Starting a container costs a runc
// process, a shim, a snapshot and netns set-up: on a 2-core machine 4 at
// once keep it busy without queueing in containerd. Pulls are few and
// long; 2 at once keep one slow registry from holding every start back.
const (
	DefaultMaxConcurrentStarts = 4
	DefaultMaxConcurrentPulls  = 2
)

// Limits bound the work a worker does at once.
type Limits struct {
	// Starts is how many tasks it prepares and starts at once (image
	// pulls aside); 0 means DefaultMaxConcurrentStarts.
	Starts int
	// Pulls is how many images it pulls at once, when its executor is an
	// exec.Puller; 0 means DefaultMaxConcurrentPulls.
	Pulls int
}

// Worker runs the node's assigned tasks through an Executor and reports
// every state change.
type Worker struct {
	exec   exec.Executor
	report func(api.TaskStatusUpdate)
	clock  clock.Clock
	log    *slog.Logger
	// startLatency, if set, observes the seconds from a task's assignment
	// to its running report.
	startLatency prometheus.Observer

	// starts and pulls are semaphores: a task holds a place in starts
	// from creating its container to its process running, and one in
	// pulls while its image is fetched.
	starts chan struct{}
	pulls  chan struct{}

	mu      sync.Mutex
	runners map[string]*runner
}

// NewWorker returns a worker that sends status changes to report.
func NewWorker(e exec.Executor, report func(api.TaskStatusUpdate), clk clock.Clock, lim Limits, log *slog.Logger) *Worker {
	if lim.Starts <= 0 {
		lim.Starts = DefaultMaxConcurrentStarts
	}
	if lim.Pulls <= 0 {
		lim.Pulls = DefaultMaxConcurrentPulls
	}
	return &Worker{
		exec: e, report: report, clock: clk, log: log.With("component", "worker"),
		starts: make(chan struct{}, lim.Starts), pulls: make(chan struct{}, lim.Pulls),
		runners: map[string]*runner{},
	}
}

// runner owns one task's container.
type runner struct {
	desired chan *api.Task // latest assignment, size 1
	done    chan struct{}
	// abort cancels the start in progress: its wait for a place, its
	// pull, its prepare and start calls. Reconcile calls it when the
	// task should no longer run, so a removed service's tasks that are
	// still queued never start.
	abort context.CancelFunc
	last  *api.Task // last assignment passed on; guarded by Worker.mu
	// started is when this worker reported the task running; guarded by
	// Worker.mu.
	started time.Time
	// state is the state this worker last reported for the task, or the
	// assigned one before it reported any; guarded by Worker.mu.
	state api.TaskState
	// health and healthOutput are the last health this worker reported,
	// carried in every later report; guarded by Worker.mu.
	health       api.Health
	healthOutput string
}

// taskInfo is what the metrics read of one task a runner owns.
type taskInfo struct {
	id      string
	service string
	slot    uint64
	state   api.TaskState
}

// tasks returns the tasks that have runners, with their states.
func (w *Worker) tasks() []taskInfo {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := make([]taskInfo, 0, len(w.runners))
	for id, r := range w.runners {
		out = append(out, taskInfo{id: id, service: r.last.ServiceName, slot: r.last.Slot, state: r.state})
	}
	return out
}

// Reconcile makes the running set match the node's assignments: it starts
// runners for new tasks, passes changes to existing ones, and removes the
// containers of tasks that are no longer assigned.
func (w *Worker) Reconcile(ctx context.Context, tasks []*api.Task) {
	assigned := make(map[string]bool, len(tasks))
	w.mu.Lock()
	for _, t := range tasks {
		assigned[t.ID] = true
		r, ok := w.runners[t.ID]
		if !ok {
			if t.Status.State.Terminal() {
				continue // finished before we saw it; its container goes when the task does
			}
			startCtx, abort := context.WithCancel(ctx)
			r = &runner{desired: make(chan *api.Task, 1), done: make(chan struct{}), abort: abort, state: t.Status.State}
			w.runners[t.ID] = r
			go w.run(ctx, startCtx, t.ID, r)
		}
		r.pass(t)
	}
	// A task the managers dropped while it runs here (deleted while this
	// node was cut off) is stopped by its runner; reap removes it later.
	for id, r := range w.runners {
		if !assigned[id] && r.last.DesiredState == api.TaskRunning {
			gone := *r.last
			gone.DesiredState = api.TaskShutdown
			r.pass(&gone)
		}
	}
	w.mu.Unlock()
	w.reap(ctx, assigned)
}

// pass replaces the runner's pending assignment with t, and aborts a
// start in progress if t should not run; w.mu is held.
func (r *runner) pass(t *api.Task) {
	select {
	case <-r.desired:
	default:
	}
	r.desired <- t
	r.last = t
	if t.DesiredState != api.TaskRunning {
		r.abort()
	}
}

// wanted reports whether the latest assignment still wants the task running.
func (w *Worker) wanted(r *runner) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return r.last.DesiredState == api.TaskRunning
}

// reap stops and removes containers of tasks the cluster no longer assigns here.
func (w *Worker) reap(ctx context.Context, assigned map[string]bool) {
	found, err := w.exec.List(ctx)
	if err != nil {
		w.log.Warn("list containers", "err", err)
		return
	}
	for _, c := range found {
		if assigned[c.TaskID] {
			continue
		}
		w.mu.Lock()
		_, running := w.runners[c.TaskID]
		w.mu.Unlock()
		if running {
			continue // its runner is stopping it
		}
		w.log.Info("removing container of a task no longer assigned", "task", c.TaskID)
		if err := w.exec.Stop(ctx, c.TaskID, defaultStopGrace); err != nil {
			w.log.Warn("stop unassigned container", "task", c.TaskID, "err", err)
		}
		if err := w.exec.Remove(ctx, c.TaskID); err != nil {
			w.log.Warn("remove unassigned container", "task", c.TaskID, "err", err)
		}
	}
}

// send reports a state change of t and returns the time it carries.
func (w *Worker) send(t *api.Task, state api.TaskState, msg string, mutate func(*api.TaskStatus)) time.Time {
	st := api.TaskStatus{State: state, Timestamp: w.clock.Now(), Message: msg, ContainerID: t.ID, StartedAt: t.Status.StartedAt}
	if mutate != nil {
		mutate(&st)
	}
	w.mu.Lock()
	if r, ok := w.runners[t.ID]; ok {
		r.state = state
		// Every report after running carries when it started, so the
		// managers can tell a quick exit from a long run.
		if state == api.TaskRunning && r.started.IsZero() {
			r.started = st.Timestamp
		}
		if !r.started.IsZero() {
			st.StartedAt = r.started
		}
		if st.Health != "" {
			r.health, r.healthOutput = st.Health, st.HealthOutput
		} else {
			st.Health, st.HealthOutput = r.health, r.healthOutput
		}
	}
	w.mu.Unlock()
	w.report(api.TaskStatusUpdate{TaskID: t.ID, Status: st})
	return st.Timestamp
}

// observeStart records how long t took from its assignment (the time the
// scheduler wrote on its assigned status) to running. A task that this
// worker did not see in the assigned state, as one adopted after an agent
// restart, is not observed. Clock skew between the leader and this node
// cannot make it negative.
func (w *Worker) observeStart(t *api.Task, running time.Time) {
	if w.startLatency == nil || t.Status.State != api.TaskAssigned || t.Status.Timestamp.IsZero() {
		return
	}
	w.startLatency.Observe(max(running.Sub(t.Status.Timestamp), 0).Seconds())
}

// run drives one task from assigned to a terminal state, then forgets it.
// startCtx ends with ctx or when the task should no longer run.
func (w *Worker) run(ctx, startCtx context.Context, id string, r *runner) {
	defer r.abort()
	defer func() {
		w.mu.Lock()
		delete(w.runners, id)
		w.mu.Unlock()
		close(r.done)
	}()
	log := w.log.With("task", id)
	var t *api.Task
	select {
	case t = <-r.desired:
	case <-ctx.Done():
		return
	}
	exited := make(chan int, 1)
	waitErr := make(chan error, 1)
	wait := func() {
		go func() {
			code, err := w.exec.Wait(ctx, id)
			if err != nil {
				waitErr <- err
				return
			}
			exited <- code
		}()
	}

	// Adopt what a previous agent left running.
	state := exec.StateUnknown
	if list, err := w.exec.List(ctx); err == nil {
		for _, c := range list {
			if c.TaskID == id {
				state = c.State
			}
		}
	}
	var check *api.HealthConfig
	health := api.HealthStarting
	switch {
	case t.DesiredState != api.TaskRunning:
		w.stop(ctx, t, log)
		return
	case state == exec.StateRunning:
		log.Info("adopted running container")
		check = w.healthCheck(ctx, t)
		if t.Status.State == api.TaskRunning {
			health = api.HealthHealthy
		} else if check == nil {
			w.send(t, api.TaskRunning, "started", nil)
		}
		wait()
	case state == exec.StateExited:
		wait()
	default:
		var err error
		check, err = w.start(startCtx, r, t, log)
		switch {
		case err == nil:
			wait()
		case ctx.Err() != nil:
			return
		case startCtx.Err() != nil || errors.Is(err, errUnwanted):
			// The task should no longer run: the loop below takes the
			// assignment that says so and stops what may have started.
			log.Info("start abandoned: the task should no longer run")
			check = nil
		default:
			w.send(t, api.TaskRejected, "start failed", func(s *api.TaskStatus) { s.Err = err.Error() })
			return
		}
	}
	results := make(chan checkResult)
	var hs *healthState
	if check != nil {
		hs = newHealthState(*check, w.clock.Now(), health)
		probeCtx, stopProbe := context.WithCancel(ctx)
		defer stopProbe()
		go w.probe(probeCtx, id, check, results)
	}
	for {
		select {
		case res := <-results:
			if !hs.observe(res) {
				continue
			}
			if w.healthChanged(ctx, t, hs.health, res.output, log) {
				return
			}
		case <-ctx.Done():
			return // the agent stops; the container keeps running
		case next := <-r.desired:
			t = next
			if t.DesiredState != api.TaskRunning {
				w.stop(ctx, t, log)
				return
			}
		case code := <-exited:
			if code == 0 {
				w.send(t, api.TaskComplete, "finished", nil)
			} else {
				w.send(t, api.TaskFailed, "task: non-zero exit", func(s *api.TaskStatus) {
					s.ExitCode = code
					s.Err = fmt.Sprintf("task: non-zero exit (%d)", code)
				})
			}
			return
		case err := <-waitErr:
			if ctx.Err() != nil {
				return
			}
			w.send(t, api.TaskFailed, "lost the container", func(s *api.TaskStatus) { s.Err = err.Error() })
			return
		}
	}
}

// healthChanged reports a task's new health: the first healthy result
// makes a starting task running; unhealthy stops the container and fails
// the task with the check's output. It returns whether the task ended.
func (w *Worker) healthChanged(ctx context.Context, t *api.Task, health api.Health, output string, log *slog.Logger) bool {
	setHealth := func(s *api.TaskStatus) { s.Health, s.HealthOutput = health, output }
	switch health {
	case api.HealthHealthy:
		w.mu.Lock()
		state := api.TaskRunning
		if r, ok := w.runners[t.ID]; ok {
			state = r.state
		}
		w.mu.Unlock()
		if state != api.TaskRunning {
			w.observeStart(t, w.send(t, api.TaskRunning, "started, healthy", setHealth))
			log.Info("task running and healthy", "service", t.ServiceName, "slot", t.Slot)
		}
		return false
	case api.HealthUnhealthy:
		log.Warn("task unhealthy", "output", output)
		// Failed is reported before the stop so that the VIPs, DNS and the
		// routing mesh drop the task now, not after its stop grace period.
		w.send(t, api.TaskFailed, "unhealthy container", func(s *api.TaskStatus) {
			setHealth(s)
			s.Err = "unhealthy: " + output
		})
		grace := t.Spec.StopGracePeriod
		if grace == 0 {
			grace = defaultStopGrace
		}
		if err := w.exec.Stop(ctx, t.ID, grace); err != nil && !errors.Is(err, exec.ErrNotFound) {
			log.Warn("stop unhealthy task", "err", err)
		}
		return true
	}
	return false
}

// errUnwanted: the task's desired state changed before it started.
var errUnwanted = errors.New("agent: task no longer wanted running")

// acquire takes a place in sem, or gives up when ctx ends or the task is
// no longer wanted; release gives the place back.
func (w *Worker) acquire(ctx context.Context, r *runner, sem chan struct{}) (release func(), err error) {
	select {
	case sem <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	release = func() { <-sem }
	if !w.wanted(r) {
		release()
		return nil, errUnwanted
	}
	return release, nil
}

// start walks the task through accepted, preparing, starting and running:
// the image is pulled within the pull limit, the container created and
// started within the start limit, and the desired state is checked again
// whenever a place is taken. ctx ends when the task is no longer wanted.
// A task with a health check stays starting: start returns its check, and
// the first healthy result makes it running.
func (w *Worker) start(ctx context.Context, r *runner, t *api.Task, log *slog.Logger) (*api.HealthConfig, error) {
	w.send(t, api.TaskAccepted, "accepted", nil)
	p, pulls := w.exec.(exec.Puller)
	if pulls {
		release, err := w.acquire(ctx, r, w.pulls)
		if err != nil {
			return nil, err
		}
		w.send(t, api.TaskPreparing, "preparing", nil)
		err = p.Pull(ctx, t.Spec.Image)
		release()
		if err != nil {
			log.Warn("pull failed", "image", t.Spec.Image, "err", err)
			return nil, fmt.Errorf("prepare: %w", err)
		}
	}
	release, err := w.acquire(ctx, r, w.starts)
	if err != nil {
		return nil, err
	}
	defer release()
	if !pulls {
		w.send(t, api.TaskPreparing, "preparing", nil)
	}
	if err := w.exec.Prepare(ctx, t); err != nil {
		log.Warn("prepare failed", "err", err)
		return nil, fmt.Errorf("prepare: %w", err)
	}
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	check := w.healthCheck(ctx, t)
	if check == nil {
		w.send(t, api.TaskStarting, "starting", nil)
	} else {
		w.send(t, api.TaskStarting, "starting, waiting for the health check", func(s *api.TaskStatus) { s.Health = api.HealthStarting })
	}
	if err := w.exec.Start(ctx, t.ID); err != nil && !errors.Is(err, exec.ErrExited) {
		log.Warn("start failed", "err", err)
		return nil, fmt.Errorf("start: %w", err)
	}
	if check != nil {
		log.Info("task started, waiting for the health check", "service", t.ServiceName, "slot", t.Slot)
		return check, nil
	}
	w.observeStart(t, w.send(t, api.TaskRunning, "started", nil))
	log.Info("task running", "service", t.ServiceName, "slot", t.Slot)
	return nil, nil
}

// stop ends a task the cluster no longer wants running.
func (w *Worker) stop(ctx context.Context, t *api.Task, log *slog.Logger) {
	if len(t.Networks) > 0 && t.Status.State == api.TaskRunning {
		tick, stopTick := w.clock.NewTicker(lbDrain)
		select {
		case <-tick:
		case <-ctx.Done():
		}
		stopTick()
	}
	grace := t.Spec.StopGracePeriod
	if grace == 0 {
		grace = defaultStopGrace
	}
	if err := w.exec.Stop(ctx, t.ID, grace); err != nil && !errors.Is(err, exec.ErrNotFound) {
		log.Warn("stop failed", "err", err)
		return
	}
	log.Info("task stopped")
	if !t.Status.State.Terminal() {
		w.send(t, api.TaskShutdown, "shutdown", nil)
	}
}
