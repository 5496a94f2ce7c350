package manager

import (
	"cmp"
	"encoding/json"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"github.com/shoal-dev/shoal/api"
	"github.com/shoal-dev/shoal/store"
)

// Service labels that ask Prometheus to scrape a service's tasks.
const (
	// LabelPrometheusPort is the port the tasks serve metrics on.
	LabelPrometheusPort = "prometheus.port"
	// LabelPrometheusPath is the metrics path, /metrics when not set.
	LabelPrometheusPath = "prometheus.path"
)

// TargetGroup is one entry of a Prometheus http_sd answer.
type TargetGroup struct {
	Targets []string          `json:"targets"`
	Labels  map[string]string `json:"labels,omitempty"`
}

// SDHandler answers Prometheus's http_sd (GET) with the scrape targets in
// this manager's store.
func (m *Manager) SDHandler() http.Handler { return NewSDHandler(m.store) }

// NewSDHandler answers Prometheus's http_sd with the scrape targets in s:
// one group per node that serves metrics, and one per running task of a
// service labelled prometheus.port that has an address.
func NewSDHandler(s *store.Store) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var groups []TargetGroup
		s.View(func(tx store.ReadTx) { groups = PrometheusTargets(tx, taskAddress) })
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(groups)
	})
}

// taskAddress is a running task's address on its first overlay network,
// "" for a task on none. As in Swarm, a Prometheus that scrapes tasks runs
// as a service on the same network.
func taskAddress(t *api.Task) string {
	if t.Status.State != api.TaskRunning || len(t.Networks) == 0 {
		return ""
	}
	p, err := netip.ParsePrefix(t.Networks[0].Addr)
	if err != nil {
		return ""
	}
	return p.Addr().String()
}

// PrometheusTargets lists the scrape targets that tx holds, nodes first
// (by ID), then tasks (by service name, slot and ID); never nil. taskAddr
// gives a task's address, "" for none.
func PrometheusTargets(tx store.ReadTx, taskAddr func(*api.Task) string) []TargetGroup {
	groups := []TargetGroup{}
	nodes := map[string]*api.Node{}
	for _, n := range tx.Nodes() {
		nodes[n.ID] = n
		if n.Endpoints.Metrics == "" {
			continue
		}
		labels := nodeLabels(n)
		labels["__meta_shoal_node_role"] = string(n.Spec.Role)
		labels["__meta_shoal_node_state"] = string(n.Status.State)
		labels["__meta_shoal_node_availability"] = string(n.Spec.Availability)
		groups = append(groups, TargetGroup{Targets: []string{n.Endpoints.Metrics}, Labels: labels})
	}

	type target struct {
		task  *api.Task
		group TargetGroup
	}
	var tasks []target
	for _, svc := range tx.Services() {
		port, ok := prometheusPort(svc.Spec.Labels)
		if !ok {
			continue
		}
		path := svc.Spec.Labels[LabelPrometheusPath]
		for _, t := range tx.TasksOfService(svc.ID) {
			if t.DesiredState != api.TaskRunning || t.Status.State != api.TaskRunning {
				continue
			}
			n := nodes[t.NodeID]
			addr := taskAddr(t)
			if n == nil || addr == "" {
				continue
			}
			labels := nodeLabels(n)
			labels["__meta_shoal_service_name"] = svc.Spec.Name
			labels["__meta_shoal_service_id"] = svc.ID
			labels["__meta_shoal_task_id"] = t.ID
			labels["__meta_shoal_task_slot"] = strconv.FormatUint(t.Slot, 10)
			if path != "" {
				labels["__metrics_path__"] = path
			}
			tasks = append(tasks, target{t, TargetGroup{Targets: []string{net.JoinHostPort(addr, port)}, Labels: labels}})
		}
	}
	slices.SortFunc(tasks, func(a, b target) int {
		return cmp.Or(cmp.Compare(a.task.ServiceName, b.task.ServiceName),
			cmp.Compare(a.task.Slot, b.task.Slot), cmp.Compare(a.task.ID, b.task.ID))
	})
	for _, t := range tasks {
		groups = append(groups, t.group)
	}
	return groups
}

// prometheusPort reads the prometheus.port label; ok is false when it is
// missing or not a port number.
func prometheusPort(labels map[string]string) (string, bool) {
	v, ok := labels[LabelPrometheusPort]
	if !ok {
		return "", false
	}
	p, err := strconv.ParseUint(strings.TrimSpace(v), 10, 16)
	if err != nil || p == 0 {
		return "", false
	}
	return strconv.FormatUint(p, 10), true
}

// nodeLabels are the meta labels every target on node n carries: its ID,
// hostname and its node labels as __meta_shoal_node_label_<key>, with
// characters Prometheus does not allow in a label name made '_'. When two
// keys come out the same, the one first in order wins.
func nodeLabels(n *api.Node) map[string]string {
	labels := map[string]string{
		"__meta_shoal_node_id":       n.ID,
		"__meta_shoal_node_hostname": n.Description.Hostname,
	}
	keys := make([]string, 0, len(n.Spec.Labels))
	for k := range n.Spec.Labels {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		name := "__meta_shoal_node_label_" + labelName(k)
		if _, taken := labels[name]; !taken {
			labels[name] = n.Spec.Labels[k]
		}
	}
	return labels
}

// labelName makes k a valid Prometheus label name suffix: letters, digits
// and '_' stay, everything else becomes '_'.
func labelName(k string) string {
	return strings.Map(func(r rune) rune {
		if r == '_' || ('a' <= r && r <= 'z') || ('A' <= r && r <= 'Z') || ('0' <= r && r <= '9') {
			return r
		}
		return '_'
	}, k)
}
