package orchestrator

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/shoal-dev/shoal/api"
	"github.com/shoal-dev/shoal/clock"
	"github.com/shoal-dev/shoal/store"
)

const (
	// coalesce is how long a pass waits for a burst of store events to end.
	coalesce = 30 * time.Millisecond
	// retryAfter is when a pass runs again after a write failed.
	retryAfter = time.Second
)

// Config wires an Orchestrator.
type Config struct {
	Store  *store.Store
	Clock  clock.Clock
	Logger *slog.Logger
	// Registry receives the metrics; nil registers none.
	Registry prometheus.Registerer
}

// Orchestrator keeps the tasks of every service in line with its spec.
type Orchestrator struct {
	store *store.Store
	clk   clock.Clock
	log   *slog.Logger
	m     *metrics
}

// New returns an orchestrator and registers its metrics, so make one per
// manager and call Run each time this manager starts leading.
func New(cfg Config) *Orchestrator {
	return &Orchestrator{
		store: cfg.Store,
		clk:   cfg.Clock,
		log:   cfg.Logger.With("component", "orchestrator"),
		m:     newMetrics(cfg.Registry),
	}
}

// Run reconciles every service at start, then after every burst of store
// changes to services, tasks or nodes, and when a delayed restart comes due,
// until ctx ends. Run it on the leader only.
func (o *Orchestrator) Run(ctx context.Context) {
	events, cancel := o.store.Watch()
	defer cancel()
	var wakeC <-chan time.Time
	stopWake := func() {}
	defer func() { stopWake() }()
	for {
		start := time.Now()
		wake := o.pass(ctx)
		took := time.Since(start)
		stopWake()
		wakeC, stopWake = nil, func() {}
		if !wake.IsZero() {
			wakeC, stopWake = o.clk.NewTicker(max(wake.Sub(o.clk.Now()), time.Millisecond))
		}
		if !store.WaitFor(ctx, events, wakeC, store.Paced(coalesce, took), store.KindService, store.KindTask, store.KindNode) {
			return
		}
	}
}

// pass reconciles every service, and every group of tasks whose service is
// gone, and returns when it next needs to run on its own (zero: never).
func (o *Orchestrator) pass(ctx context.Context) time.Time {
	start := time.Now() // for the duration metric only; decisions use o.clk
	defer func() { o.m.reconcile.Observe(time.Since(start).Seconds()) }()

	var services []*api.Service
	var nodes []*api.Node
	var tasks []*api.Task
	o.store.View(func(tx store.ReadTx) {
		services, nodes, tasks = tx.Services(), tx.Nodes(), tx.Tasks()
	})
	byService := make(map[string][]*api.Task)
	for _, t := range tasks {
		byService[t.ServiceID] = append(byService[t.ServiceID], t)
	}
	svcByID := make(map[string]*api.Service, len(services))
	ids := make([]string, 0, len(services)+len(byService))
	for _, s := range services {
		svcByID[s.ID] = s
		ids = append(ids, s.ID)
	}
	for id := range byService {
		if svcByID[id] == nil {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)

	now := o.clk.Now()
	var wake time.Time
	earliest := func(t time.Time) {
		if !t.IsZero() && (wake.IsZero() || t.Before(wake)) {
			wake = t
		}
	}
	for _, id := range ids {
		if ctx.Err() != nil {
			return time.Time{}
		}
		p := Reconcile(now, svcByID[id], byService[id], nodes)
		earliest(p.NextWake)
		if p.Empty() {
			continue
		}
		next, err := o.write(ctx, id)
		if err != nil {
			if ctx.Err() != nil {
				return time.Time{}
			}
			o.log.Warn("write plan", "service", id, "err", err)
			earliest(o.clk.Now().Add(retryAfter))
			continue
		}
		earliest(next)
	}
	return wake
}

// write reconciles one service again inside a store transaction, so a
// conflict recomputes the plan on fresh state, and writes the plan. A plan
// bigger than a change set should be (store.Tx.Full: 10k new tasks are ~6 MB)
// is written in parts, reconciling again before each.
func (o *Orchestrator) write(ctx context.Context, serviceID string) (time.Time, error) {
	for {
		next, more, err := o.writePart(ctx, serviceID)
		if err != nil || !more {
			return next, err
		}
	}
}

// writePart writes as much of the service's plan as fits one change set;
// more says some of it is left.
func (o *Orchestrator) writePart(ctx context.Context, serviceID string) (_ time.Time, more bool, _ error) {
	var p Plan
	var name string
	created := 0
	err := o.store.Update(ctx, func(tx *store.Tx) error {
		more, created = false, 0
		svc := tx.Service(serviceID)
		name = ""
		if svc != nil {
			name = svc.Spec.Name
		}
		p = Reconcile(o.clk.Now(), svc, tx.TasksOfService(serviceID), tx.Nodes())
		if p.Service != nil {
			if err := tx.PutService(p.Service); err != nil {
				return fmt.Errorf("update status: %w", err)
			}
		}
		for _, t := range p.Create {
			if tx.Full() {
				more = true
				return nil
			}
			if err := tx.PutTask(t); err != nil {
				return fmt.Errorf("create task %s: %w", t.ID, err)
			}
			created++
		}
		for _, t := range p.Update {
			if tx.Full() {
				more = true
				return nil
			}
			if err := tx.PutTask(t); err != nil {
				return fmt.Errorf("update task %s: %w", t.ID, err)
			}
		}
		for _, id := range p.Delete {
			if tx.Full() {
				more = true
				return nil
			}
			if err := tx.DeleteTask(id); err != nil {
				return fmt.Errorf("delete task %s: %w", id, err)
			}
		}
		return nil
	})
	if err != nil {
		return time.Time{}, false, fmt.Errorf("service %s: %w", serviceID, err)
	}
	o.m.created.Add(float64(created))
	if s := p.Service; s != nil {
		o.log.Info("rolling update", "service", serviceID, "name", name, "state", s.UpdateStatus.State, "message", s.UpdateStatus.Message)
	}
	if !p.Empty() {
		o.log.Info("reconciled service", "service", serviceID, "name", name, "deleted_service", name == "",
			"created", created, "updated", len(p.Update), "deleted", len(p.Delete), "more", more)
	}
	return p.NextWake, more, nil
}
