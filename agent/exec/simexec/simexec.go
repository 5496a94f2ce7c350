package simexec

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/shoal-dev/shoal/agent/exec"
	"github.com/shoal-dev/shoal/api"
)

// ErrSimulated is the start failure drawn at Config.FailureRate.
var ErrSimulated = errors.New("simexec: simulated start failure")

// Config sets how tasks behave.
type Config struct {
	// PrepareLatency and StartLatency are how long Prepare and Start take.
	PrepareLatency time.Duration
	StartLatency   time.Duration
	// FailureRate is the share of starts (0 to 1) that fail with ErrSimulated.
	FailureRate float64
	// Rand draws the failures; nil uses a generator seeded at random.
	Rand *rand.Rand
}

// Executor is an in-memory exec.Executor; safe for concurrent use.
type Executor struct {
	cfg Config

	mu   sync.Mutex
	ctrs map[string]*container
}

type container struct {
	status exec.ContainerStatus
	exited chan struct{} // closed when the task stops
}

var _ exec.Executor = (*Executor)(nil)

// New returns an executor with no containers.
func New(cfg Config) (*Executor, error) {
	if cfg.FailureRate < 0 || cfg.FailureRate > 1 {
		return nil, fmt.Errorf("simexec: failure rate %v: want 0 to 1", cfg.FailureRate)
	}
	if cfg.PrepareLatency < 0 || cfg.StartLatency < 0 {
		return nil, fmt.Errorf("simexec: latencies %s and %s: want >= 0", cfg.PrepareLatency, cfg.StartLatency)
	}
	if cfg.Rand == nil {
		cfg.Rand = rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64()))
	}
	return &Executor{cfg: cfg, ctrs: map[string]*container{}}, nil
}

// wait sleeps d unless ctx ends first.
func wait(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// Prepare creates the task's container after PrepareLatency; an existing
// one is adopted.
func (e *Executor) Prepare(ctx context.Context, t *api.Task) error {
	if err := wait(ctx, e.cfg.PrepareLatency); err != nil {
		return err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if _, ok := e.ctrs[t.ID]; ok {
		return nil
	}
	e.ctrs[t.ID] = &container{
		status: exec.ContainerStatus{TaskID: t.ID, ServiceID: t.ServiceID, ServiceName: t.ServiceName,
			Slot: t.Slot, Image: t.Spec.Image, State: exec.StateCreated},
		exited: make(chan struct{}),
	}
	return nil
}

// Start runs the task after StartLatency, or fails with ErrSimulated at
// the configured rate (the container then stays created).
func (e *Executor) Start(ctx context.Context, taskID string) error {
	if err := wait(ctx, e.cfg.StartLatency); err != nil {
		return err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	c, ok := e.ctrs[taskID]
	switch {
	case !ok:
		return fmt.Errorf("start %s: %w", taskID, exec.ErrNotFound)
	case c.status.State == exec.StateRunning:
		return nil
	case c.status.State == exec.StateExited:
		return fmt.Errorf("start %s: %w", taskID, exec.ErrExited)
	case e.cfg.FailureRate > 0 && e.cfg.Rand.Float64() < e.cfg.FailureRate:
		return fmt.Errorf("start %s: %w", taskID, ErrSimulated)
	}
	c.status.State = exec.StateRunning
	c.status.Pid = 1
	return nil
}

// Wait returns once the task is stopped or removed.
func (e *Executor) Wait(ctx context.Context, taskID string) (int, error) {
	e.mu.Lock()
	c, ok := e.ctrs[taskID]
	e.mu.Unlock()
	if !ok {
		return 0, fmt.Errorf("wait %s: %w", taskID, exec.ErrNotFound)
	}
	select {
	case <-ctx.Done():
		return 0, ctx.Err()
	case <-c.exited:
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	return c.status.ExitCode, nil
}

// Stop ends a running task at once with 143, as a SIGTERM death.
func (e *Executor) Stop(_ context.Context, taskID string, _ time.Duration) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	c, ok := e.ctrs[taskID]
	if !ok {
		return fmt.Errorf("stop %s: %w", taskID, exec.ErrNotFound)
	}
	e.exit(c, 143)
	return nil
}

// exit marks c exited with code unless it already is; e.mu is held.
func (e *Executor) exit(c *container, code int) {
	if c.status.State == exec.StateExited {
		return
	}
	c.status.State, c.status.ExitCode, c.status.Pid = exec.StateExited, code, 0
	c.status.ExitedAt = time.Now()
	close(c.exited)
}

// Remove forgets the task; a running one is ended first.
func (e *Executor) Remove(_ context.Context, taskID string) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if c, ok := e.ctrs[taskID]; ok {
		e.exit(c, 137)
		delete(e.ctrs, taskID)
	}
	return nil
}

// List returns every container.
func (e *Executor) List(context.Context) ([]exec.ContainerStatus, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := make([]exec.ContainerStatus, 0, len(e.ctrs))
	for _, c := range e.ctrs {
		out = append(out, c.status)
	}
	return out, nil
}

// Running counts the tasks that run now.
func (e *Executor) Running() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	n := 0
	for _, c := range e.ctrs {
		if c.status.State == exec.StateRunning {
			n++
		}
	}
	return n
}

// Logs has no file to offer: simulated tasks write nothing.
func (e *Executor) Logs(string) string { return "/dev/null" }

// Stats reports zero use for a running task.
func (e *Executor) Stats(_ context.Context, taskID string) (exec.Stats, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	c, ok := e.ctrs[taskID]
	switch {
	case !ok:
		return exec.Stats{}, fmt.Errorf("stats %s: %w", taskID, exec.ErrNotFound)
	case c.status.State != exec.StateRunning:
		return exec.Stats{}, fmt.Errorf("stats %s: %w", taskID, exec.ErrNotStarted)
	}
	return exec.Stats{}, nil
}
