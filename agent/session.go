package agent

import (
	"context"
	"sync"
	"time"

	"github.com/shoal-dev/shoal/api"
)

// statusQueue keeps the latest unreported status of each task.
type statusQueue struct {
	mu      sync.Mutex
	pending map[string]api.TaskStatusUpdate
	order   []string
	wake    chan struct{}
}

func newStatusQueue() *statusQueue {
	return &statusQueue{pending: map[string]api.TaskStatusUpdate{}, wake: make(chan struct{}, 1)}
}

// push queues u; an update not yet sent for the same task is kept only if
// it is further along, so a report never moves a task backwards.
func (q *statusQueue) push(u api.TaskStatusUpdate) {
	q.mu.Lock()
	if old, ok := q.pending[u.TaskID]; ok {
		if u.Status.State.Before(old.Status.State) {
			q.mu.Unlock()
			return
		}
	} else {
		q.order = append(q.order, u.TaskID)
	}
	q.pending[u.TaskID] = u
	q.mu.Unlock()
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

func (q *statusQueue) take() []api.TaskStatusUpdate {
	q.mu.Lock()
	defer q.mu.Unlock()
	out := make([]api.TaskStatusUpdate, 0, len(q.order))
	for _, id := range q.order {
		out = append(out, q.pending[id])
	}
	q.pending, q.order = map[string]api.TaskStatusUpdate{}, nil
	return out
}

// putBack requeues updates that could not be sent, unless newer ones came.
func (q *statusQueue) putBack(us []api.TaskStatusUpdate) {
	for _, u := range us {
		q.mu.Lock()
		_, newer := q.pending[u.TaskID]
		q.mu.Unlock()
		if !newer {
			q.push(u)
		}
	}
}

// runStatus sends queued task status to the managers, batched, until ctx ends.
func (a *Agent) runStatus(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-a.status.wake:
		}
		// Collect what the same burst of changes adds.
		select {
		case <-ctx.Done():
			return
		case <-time.After(20 * time.Millisecond):
		}
		batch := a.status.take()
		if len(batch) == 0 {
			continue
		}
		if err := a.withManager(ctx, func(c *api.Client) error {
			cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			defer cancel()
			return c.ReportTaskStatus(cctx, batch)
		}); err != nil {
			a.log.Warn("report task status; will retry", "tasks", len(batch), "err", err)
			a.status.putBack(batch)
			select {
			case <-ctx.Done():
				return
			case <-time.After(500 * time.Millisecond):
			}
		}
	}
}

// runAssignments long-polls the managers for this node's tasks and hands
// them to the worker. A worker cut off from the managers keeps its tasks.
func (a *Agent) runAssignments(ctx context.Context) {
	worker := a.connectEngine(ctx)
	if worker == nil {
		return
	}
	// The first answer is the complete set, later ones the changes.
	var since uint64
	var networkSum string
	var tasks []*api.Task
	var network api.NetworkState
	for ctx.Err() == nil {
		var got api.Assignments
		err := a.withManager(ctx, func(c *api.Client) error {
			var err error
			got, err = c.WaitAssignments(ctx, since, networkSum)
			return err
		})
		if err != nil {
			if ctx.Err() == nil {
				a.log.Debug("assignments", "err", err)
				select {
				case <-ctx.Done():
				case <-time.After(500 * time.Millisecond):
				}
			}
			continue
		}
		since, networkSum = got.Index, got.NetworkSum
		tasks, network = got.ApplyTo(tasks, network)
		a.files.update(got, tasks)
		if a.cfg.Network != nil {
			// Links, peers, names and VIPs first: tasks about to start need them.
			a.cfg.Network.Update(tasks, network)
		}
		worker.Reconcile(ctx, tasks)
	}
}

// connectEngine retries until the engine answers; tasks wait meanwhile.
func (a *Agent) connectEngine(ctx context.Context) *Worker {
	for {
		e, err := a.cfg.NewExecutor()
		if err == nil {
			w := NewWorker(e, a.status.push, a.cfg.Clock, a.cfg.Limits, a.log)
			w.startLatency = a.metrics.startLatency
			a.mu.Lock()
			a.exec, a.worker = e, w
			a.mu.Unlock()
			a.log.Info("connected to the container engine; taking tasks")
			return w
		}
		a.log.Warn("container engine unavailable; no tasks run here until it is", "err", err)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(5 * time.Second):
		}
	}
}

// withManager calls fn with the manager that answered last, then the others.
func (a *Agent) withManager(ctx context.Context, fn func(*api.Client) error) error {
	a.mu.Lock()
	current := a.current
	a.mu.Unlock()
	addrs := []string{}
	if current != "" {
		addrs = append(addrs, current)
	}
	for _, m := range a.cfg.Managers() {
		if m.API != "" && m.API != current {
			addrs = append(addrs, m.API)
		}
	}
	var lastErr error = errNoManager
	for _, addr := range addrs {
		c, err := a.cfg.Dial(addr)
		if err != nil {
			lastErr = err
			continue
		}
		if err = fn(c); err == nil {
			a.mu.Lock()
			a.current = addr
			a.mu.Unlock()
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		lastErr = err
	}
	return lastErr
}
