package exectest

import (
	"context"
	"fmt"
	"path/filepath"
	"sort"
	"sync"
	"time"

	"github.com/shoal-dev/shoal/agent/exec"
	"github.com/shoal-dev/shoal/api"
)

// Call is one recorded Executor call.
type Call struct {
	Op     string // prepare, start, wait, stop, remove, list, stats
	TaskID string // empty for list
	Grace  time.Duration
}

func (c Call) String() string {
	if c.TaskID == "" {
		return c.Op
	}
	return c.Op + " " + c.TaskID
}

// Fake is an in-memory exec.Executor. Its zero value is not usable: call New.
type Fake struct {
	// Fail, when set, is asked before every operation; a non-nil error is
	// returned instead of doing the operation (the call is still recorded).
	Fail func(op, taskID string) error
	// StopExitCode is the exit code Stop gives a running task (143, a
	// SIGTERM death, when zero).
	StopExitCode int

	logDir string

	mu    sync.Mutex
	calls []Call
	ctrs  map[string]*container
	pid   uint32
	// check and imageHealth answer Exec and ImageHealthcheck (SetCheck).
	check       func(taskID string, args []string) (int, string, error)
	imageHealth *api.HealthConfig
}

type container struct {
	task   *api.Task // nil for containers added with Add
	status exec.ContainerStatus
	stats  exec.Stats
	exited chan struct{}
}

var _ exec.Executor = (*Fake)(nil)

// New returns an empty Fake whose Logs paths are under logDir.
func New(logDir string) *Fake {
	return &Fake{logDir: logDir, ctrs: map[string]*container{}}
}

func (f *Fake) record(c Call) error {
	f.mu.Lock()
	f.calls = append(f.calls, c)
	fail := f.Fail
	f.mu.Unlock()
	if fail != nil {
		return fail(c.Op, c.TaskID)
	}
	return nil
}

// Prepare records the task and creates its container unless it exists.
func (f *Fake) Prepare(ctx context.Context, t *api.Task) error {
	if err := f.record(Call{Op: "prepare", TaskID: t.ID}); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.ctrs[t.ID]; ok {
		return nil
	}
	cp := *t
	f.ctrs[t.ID] = &container{
		task: &cp,
		status: exec.ContainerStatus{
			TaskID: t.ID, ServiceID: t.ServiceID, ServiceName: t.ServiceName, Slot: t.Slot,
			Image: t.Spec.Image, State: exec.StateCreated,
		},
		exited: make(chan struct{}),
	}
	return nil
}

// Start moves a created container to running.
func (f *Fake) Start(ctx context.Context, taskID string) error {
	if err := f.record(Call{Op: "start", TaskID: taskID}); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	c, ok := f.ctrs[taskID]
	if !ok {
		return fmt.Errorf("start %s: %w", taskID, exec.ErrNotFound)
	}
	switch c.status.State {
	case exec.StateRunning:
		return nil
	case exec.StateExited:
		return fmt.Errorf("start %s: %w", taskID, exec.ErrExited)
	}
	f.pid++
	c.status.State = exec.StateRunning
	c.status.Pid = 1000 + f.pid
	return nil
}

// Wait blocks until the task exits (through Exit, Stop or Remove) or ctx ends.
func (f *Fake) Wait(ctx context.Context, taskID string) (int, error) {
	if err := f.record(Call{Op: "wait", TaskID: taskID}); err != nil {
		return -1, err
	}
	f.mu.Lock()
	c, ok := f.ctrs[taskID]
	var state exec.State
	if ok {
		state = c.status.State
	}
	f.mu.Unlock()
	switch {
	case !ok:
		return -1, fmt.Errorf("wait %s: %w", taskID, exec.ErrNotFound)
	case state == exec.StateCreated:
		return -1, fmt.Errorf("wait %s: %w", taskID, exec.ErrNotStarted)
	}
	select {
	case <-c.exited:
		f.mu.Lock()
		defer f.mu.Unlock()
		return c.status.ExitCode, nil
	case <-ctx.Done():
		return -1, fmt.Errorf("wait %s: %w", taskID, ctx.Err())
	}
}

// Stop makes a running task exit with StopExitCode.
func (f *Fake) Stop(ctx context.Context, taskID string, grace time.Duration) error {
	if err := f.record(Call{Op: "stop", TaskID: taskID, Grace: grace}); err != nil {
		return err
	}
	code := f.StopExitCode
	if code == 0 {
		code = 143
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if c, ok := f.ctrs[taskID]; ok && c.status.State == exec.StateRunning {
		f.exitLocked(c, code)
	}
	return nil
}

// Remove deletes the container, killing a running task (exit code 137).
func (f *Fake) Remove(ctx context.Context, taskID string) error {
	if err := f.record(Call{Op: "remove", TaskID: taskID}); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	c, ok := f.ctrs[taskID]
	if !ok {
		return nil
	}
	if c.status.State == exec.StateRunning {
		f.exitLocked(c, 137)
	}
	delete(f.ctrs, taskID)
	return nil
}

// List returns the containers sorted by task ID.
func (f *Fake) List(ctx context.Context) ([]exec.ContainerStatus, error) {
	if err := f.record(Call{Op: "list"}); err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make([]exec.ContainerStatus, 0, len(f.ctrs))
	for _, c := range f.ctrs {
		out = append(out, c.status)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].TaskID < out[j].TaskID })
	return out, nil
}

// Logs returns logDir/<taskID>.log; the fake never writes it.
func (f *Fake) Logs(taskID string) string {
	return filepath.Join(f.logDir, taskID+".log")
}

// Stats returns the stats set with SetStats (zero until then) of a running
// task; ErrNotStarted for one that does not run.
func (f *Fake) Stats(ctx context.Context, taskID string) (exec.Stats, error) {
	if err := f.record(Call{Op: "stats", TaskID: taskID}); err != nil {
		return exec.Stats{}, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	c, ok := f.ctrs[taskID]
	switch {
	case !ok:
		return exec.Stats{}, fmt.Errorf("stats %s: %w", taskID, exec.ErrNotFound)
	case c.status.State != exec.StateRunning:
		return exec.Stats{}, fmt.Errorf("stats %s: %w", taskID, exec.ErrNotStarted)
	}
	return c.stats, nil
}

// SetStats sets what Stats answers for a task's container.
func (f *Fake) SetStats(taskID string, st exec.Stats) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	c, ok := f.ctrs[taskID]
	if !ok {
		return fmt.Errorf("set stats %s: %w", taskID, exec.ErrNotFound)
	}
	c.stats = st
	return nil
}

func (f *Fake) exitLocked(c *container, code int) {
	c.status.State = exec.StateExited
	c.status.ExitCode = code
	c.status.Pid = 0
	c.status.ExitedAt = time.Unix(0, 0)
	close(c.exited)
}

// Exit makes a running task's process exit with code.
func (f *Fake) Exit(taskID string, code int) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	c, ok := f.ctrs[taskID]
	if !ok {
		return fmt.Errorf("exit %s: %w", taskID, exec.ErrNotFound)
	}
	if c.status.State != exec.StateRunning {
		return fmt.Errorf("exit %s: state %s, want %s", taskID, c.status.State, exec.StateRunning)
	}
	f.exitLocked(c, code)
	return nil
}

// Add puts in a container that already exists, as an agent finds them after
// a restart. An exited one is waitable at once.
func (f *Fake) Add(st exec.ContainerStatus) {
	f.mu.Lock()
	defer f.mu.Unlock()
	c := &container{status: st, exited: make(chan struct{})}
	if st.State == exec.StateExited {
		close(c.exited)
	}
	if st.State == exec.StateRunning && st.Pid == 0 {
		f.pid++
		c.status.Pid = 1000 + f.pid
	}
	f.ctrs[st.TaskID] = c
}

// Calls returns a copy of the calls recorded so far.
func (f *Fake) Calls() []Call {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]Call(nil), f.calls...)
}

// Ops returns the recorded calls as "op taskID" strings, for comparing.
func (f *Fake) Ops() []string {
	calls := f.Calls()
	out := make([]string, len(calls))
	for i, c := range calls {
		out[i] = c.String()
	}
	return out
}

// Task returns the task a container was prepared from.
func (f *Fake) Task(taskID string) (api.Task, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	c, ok := f.ctrs[taskID]
	if !ok || c.task == nil {
		return api.Task{}, false
	}
	return *c.task, true
}

// Status returns one container's status.
func (f *Fake) Status(taskID string) (exec.ContainerStatus, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	c, ok := f.ctrs[taskID]
	if !ok {
		return exec.ContainerStatus{}, false
	}
	return c.status, true
}

var _ exec.Checker = (*Fake)(nil)

// SetCheck makes Exec answer with check (nil: exit 0, no output) and
// ImageHealthcheck with image for every image.
func (f *Fake) SetCheck(check func(taskID string, args []string) (int, string, error), image *api.HealthConfig) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.check, f.imageHealth = check, image
}

// Exec records an "exec" call and answers as SetCheck said; it fails with
// exec.ErrNotStarted unless the task runs.
func (f *Fake) Exec(ctx context.Context, taskID string, args []string) (int, string, error) {
	if err := f.record(Call{Op: "exec", TaskID: taskID}); err != nil {
		return -1, "", err
	}
	f.mu.Lock()
	c, ok := f.ctrs[taskID]
	check := f.check
	running := ok && c.status.State == exec.StateRunning
	f.mu.Unlock()
	if !ok {
		return -1, "", exec.ErrNotFound
	}
	if !running {
		return -1, "", exec.ErrNotStarted
	}
	if check == nil {
		return 0, "", nil
	}
	return check(taskID, args)
}

// ImageHealthcheck returns the image check SetCheck gave.
func (f *Fake) ImageHealthcheck(ctx context.Context, image string) (*api.HealthConfig, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.imageHealth == nil {
		return nil, nil
	}
	h := *f.imageHealth
	h.Test = append([]string(nil), h.Test...)
	return &h, nil
}
