package manager

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/shoal-dev/shoal/api"
	"github.com/shoal-dev/shoal/store"
)

// nodesCollector derives node gauges from the store at scrape time.
type nodesCollector struct {
	store *store.Store
	nodes *prometheus.Desc
}

func newNodesCollector(s *store.Store) *nodesCollector {
	return &nodesCollector{store: s, nodes: prometheus.NewDesc("shoal_nodes",
		"Nodes in the cluster by state and role, as this manager's store holds them.", []string{"state", "role"}, nil)}
}

func (c *nodesCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.nodes }

func (c *nodesCollector) Collect(ch chan<- prometheus.Metric) {
	counts := map[[2]string]int{}
	for _, st := range []api.NodeState{api.NodeStateReady, api.NodeStateDown, api.NodeStateUnknown} {
		for _, r := range []api.NodeRole{api.RoleManager, api.RoleWorker} {
			counts[[2]string{string(st), string(r)}] = 0
		}
	}
	c.store.View(func(tx store.ReadTx) {
		for _, n := range tx.Nodes() {
			counts[[2]string{string(n.Status.State), string(n.Spec.Role)}]++
		}
	})
	for k, v := range counts {
		ch <- prometheus.MustNewConstMetric(c.nodes, prometheus.GaugeValue, float64(v), k[0], k[1])
	}
}
