package manager

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/shoal-dev/shoal/api"
	"github.com/shoal-dev/shoal/store"
)

// stateCollector derives cluster gauges from the store at scrape time, so
// they are right on every manager without counting at each write.
type stateCollector struct {
	store   *store.Store
	nodes   *prometheus.Desc
	tasks   *prometheus.Desc
	desired *prometheus.Desc
	running *prometheus.Desc
}

func newStateCollector(s *store.Store) *stateCollector {
	return &stateCollector{
		store: s,
		nodes: prometheus.NewDesc("shoal_nodes",
			"Nodes in the cluster by state and role, as this manager's store holds them.", []string{"state", "role"}, nil),
		tasks: prometheus.NewDesc("shoal_tasks",
			"Tasks by observed state.", []string{"state"}, nil),
		desired: prometheus.NewDesc("shoal_service_replicas_desired",
			"Tasks a service wants running.", []string{"service"}, nil),
		running: prometheus.NewDesc("shoal_service_replicas_running",
			"Tasks of a service that run now.", []string{"service"}, nil),
	}
}

func (c *stateCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.nodes
	ch <- c.tasks
	ch <- c.desired
	ch <- c.running
}

var taskStates = []api.TaskState{
	api.TaskNew, api.TaskPending, api.TaskAssigned, api.TaskAccepted, api.TaskPreparing, api.TaskStarting,
	api.TaskRunning, api.TaskComplete, api.TaskShutdown, api.TaskFailed, api.TaskRejected, api.TaskOrphaned,
}

func (c *stateCollector) Collect(ch chan<- prometheus.Metric) {
	nodes := map[[2]string]int{}
	for _, st := range []api.NodeState{api.NodeStateReady, api.NodeStateDown, api.NodeStateUnknown} {
		for _, r := range []api.NodeRole{api.RoleManager, api.RoleWorker} {
			nodes[[2]string{string(st), string(r)}] = 0
		}
	}
	tasks := map[api.TaskState]int{}
	for _, st := range taskStates {
		tasks[st] = 0
	}
	type replicas struct{ desired, running int }
	services := map[string]*replicas{}
	c.store.View(func(tx store.ReadTx) {
		for _, n := range tx.Nodes() {
			nodes[[2]string{string(n.Status.State), string(n.Spec.Role)}]++
		}
		names := map[string]string{}
		for _, svc := range tx.Services() {
			r := &replicas{}
			if svc.Spec.Mode == api.ModeReplicated {
				r.desired = int(svc.Spec.Replicas)
			}
			services[svc.Spec.Name] = r
			names[svc.ID] = svc.Spec.Name
		}
		for _, t := range tx.Tasks() {
			tasks[t.Status.State]++
			r := services[names[t.ServiceID]]
			if r == nil || t.DesiredState != api.TaskRunning {
				continue
			}
			if t.Slot == 0 {
				r.desired++ // global: one per node with a task
			}
			if t.Status.State == api.TaskRunning {
				r.running++
			}
		}
	})
	for k, v := range nodes {
		ch <- prometheus.MustNewConstMetric(c.nodes, prometheus.GaugeValue, float64(v), k[0], k[1])
	}
	for k, v := range tasks {
		ch <- prometheus.MustNewConstMetric(c.tasks, prometheus.GaugeValue, float64(v), string(k))
	}
	for name, r := range services {
		ch <- prometheus.MustNewConstMetric(c.desired, prometheus.GaugeValue, float64(r.desired), name)
		ch <- prometheus.MustNewConstMetric(c.running, prometheus.GaugeValue, float64(r.running), name)
	}
}
