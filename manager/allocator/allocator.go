package allocator

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/shoal-dev/shoal/api"
	"github.com/shoal-dev/shoal/clock"
	"github.com/shoal-dev/shoal/store"
)

const (
	// coalesce is how long a pass waits for a burst of store events to end.
	coalesce = 20 * time.Millisecond
	// retryAfter is when a pass runs again after a write failed.
	retryAfter = time.Second
	// errPrefix starts the Status.Err the allocator writes on a task.
	errPrefix = "network allocation: "
)

// Config wires an Allocator.
type Config struct {
	Store  *store.Store
	Clock  clock.Clock
	Logger *slog.Logger
	// Registry receives the metrics; nil registers none.
	Registry prometheus.Registerer
}

// Allocator writes the addresses Allocate computes. Run it on the leader
// only: it is the only writer of services' VIPs and tasks' attachments, so
// addresses it computed from one snapshot cannot clash with another writer's.
type Allocator struct {
	store *store.Store
	clk   clock.Clock
	log   *slog.Logger
	m     *metrics
}

// New returns an allocator and registers its metrics, so make one per
// manager and call Run each time this manager starts leading.
func New(cfg Config) *Allocator {
	return &Allocator{
		store: cfg.Store,
		clk:   cfg.Clock,
		log:   cfg.Logger.With("component", "allocator"),
		m:     newMetrics(cfg.Registry),
	}
}

// Run allocates at start and after every burst of changes to networks,
// services or tasks, until ctx ends.
func (a *Allocator) Run(ctx context.Context) {
	events, cancel := a.store.Watch()
	defer cancel()
	for {
		var retry <-chan time.Time
		stop := func() {}
		start := time.Now()
		err := a.Pass(ctx)
		took := time.Since(start)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			a.log.Warn("allocation pass", "err", err)
			retry, stop = a.clk.NewTicker(retryAfter)
		}
		ok := store.WaitFor(ctx, events, retry, store.Paced(coalesce, took), store.KindNetwork, store.KindService, store.KindTask, store.KindNode)
		stop()
		if !ok {
			return
		}
	}
}

// Pass computes a plan on a snapshot and writes it in batches. A planned
// object that changed in between in a way that matters (a service's version,
// a task's state or attachments) is left for the next pass.
func (a *Allocator) Pass(ctx context.Context) error {
	var networks []*api.Network
	var services []*api.Service
	var tasks []*api.Task
	var nodes []*api.Node
	a.store.View(func(tx store.ReadTx) {
		networks, services, tasks, nodes = tx.Networks(), tx.Services(), tx.Tasks(), tx.Nodes()
	})
	plan := Allocate(networks, services, tasks, nodes)
	nodesBefore := make(map[string]string, len(nodes))
	for _, n := range nodes {
		nodesBefore[n.ID] = n.IngressAddr
	}
	before := make(map[string][]api.NetworkAttachment, len(plan.Tasks))
	for _, t := range tasks {
		before[t.ID] = t.Networks
	}

	failed := make(map[string]string)
	for _, f := range plan.Failures {
		if f.NodeID != "" {
			a.log.Warn("no ingress address for node", "node", f.NodeID, "err", f.Err)
			continue
		}
		if f.TaskID == "" {
			a.log.Warn("no virtual IP for service", "service", f.ServiceID, "err", f.Err)
			continue
		}
		failed[f.TaskID] = errPrefix + f.Err.Error()
	}
	a.m.waiting.Set(float64(len(failed)))

	var writes []func(tx *store.Tx) (int, error)
	for _, svc := range plan.Services {
		writes = append(writes, func(tx *store.Tx) (int, error) {
			cur := tx.Service(svc.ID)
			if cur == nil || cur.Meta.Version != svc.Meta.Version {
				return 0, nil
			}
			n := len(newVIPs(cur.Endpoint.VIPs, svc.Endpoint.VIPs))
			return n, tx.PutService(svc)
		})
	}
	for _, t := range plan.Tasks {
		writes = append(writes, func(tx *store.Tx) (int, error) {
			cur := tx.Task(t.ID)
			if cur == nil || !allocatable(cur) || !slices.Equal(cur.Networks, before[t.ID]) {
				return 0, nil
			}
			n := len(newAttachments(cur.Networks, t.Networks))
			cur.Networks = t.Networks
			if strings.HasPrefix(cur.Status.Err, errPrefix) {
				cur.Status.Err = ""
			}
			return n, tx.PutTask(cur)
		})
	}
	for _, n := range plan.Nodes {
		writes = append(writes, func(tx *store.Tx) (int, error) {
			cur := tx.Node(n.ID)
			if cur == nil || cur.IngressAddr != nodesBefore[n.ID] {
				return 0, nil
			}
			cur.IngressAddr = n.IngressAddr
			allocated := 0
			if n.IngressAddr != "" {
				allocated = 1
			}
			return allocated, tx.PutNode(cur)
		})
	}
	// Tell the user why a task waits, once.
	ids := make([]string, 0, len(failed))
	for id := range failed {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	for _, id := range ids {
		writes = append(writes, func(tx *store.Tx) (int, error) {
			cur := tx.Task(id)
			if cur == nil || !allocatable(cur) || cur.Status.Err == failed[id] {
				return 0, nil
			}
			cur.Status.Err = failed[id]
			return 0, tx.PutTask(cur)
		})
	}

	// Change sets near store.FullBytes; a write counts once even if its
	// batch is retried.
	done := make([]int, len(writes))
	idx := make([]int, len(writes))
	for i := range idx {
		idx[i] = i
	}
	err := store.UpdateEach(ctx, a.store, idx, func(tx *store.Tx, i int) error {
		n, err := writes[i](tx)
		done[i] = n
		return err
	})
	allocated := 0
	for _, n := range done {
		allocated += n
	}
	a.m.allocated.Add(float64(allocated))
	if err != nil {
		return fmt.Errorf("write allocations: %w", err)
	}
	if !plan.Empty() {
		a.log.Debug("allocated", "services", len(plan.Services), "tasks", len(plan.Tasks), "nodes", len(plan.Nodes), "failures", len(plan.Failures))
	}
	return nil
}

func newVIPs(old, next []api.VIP) []api.VIP {
	return slices.DeleteFunc(slices.Clone(next), func(v api.VIP) bool { return slices.Contains(old, v) })
}

func newAttachments(old, next []api.NetworkAttachment) []api.NetworkAttachment {
	return slices.DeleteFunc(slices.Clone(next), func(a api.NetworkAttachment) bool { return slices.Contains(old, a) })
}
