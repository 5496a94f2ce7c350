package e2e

import (
	"fmt"
	"maps"
	"net"
	"slices"
	"strconv"
	"testing"
	"time"
)

// shoalMetricsPort is the port of every daemon's --metrics-addr here.
const shoalMetricsPort = 9323

// promTimeout bounds how long Prometheus may take to find and scrape the
// nodes: the discovery refresh (2s) plus a scrape (1s), with room for a slow
// machine.
const promTimeout = 30 * time.Second

// TestPrometheus scrapes a cluster of a manager and two workers with a real
// Prometheus that finds the nodes through the manager's http_sd endpoint,
// and follows a service's scaling through shoal_service_replicas_running.
func TestPrometheus(t *testing.T) {
	requireEngine(t)
	requirePrometheus(t)
	shoalBin(t)
	start := time.Now()
	metricsAddr := func(h *Host) string { return net.JoinHostPort(h.IP, strconv.Itoa(shoalMetricsPort)) }
	c := NewEngineCluster(t, 1, 2, WithDaemonFlags(func(h *Host) []string {
		return []string{"--metrics-addr", metricsAddr(h)}
	}))
	m := c.Managers[0]
	report(t, "cluster of 1 manager and 2 workers with --metrics-addr ready: %.2fs", time.Since(start).Seconds())

	cfg := fmt.Sprintf(`global:
  scrape_interval: 1s
  scrape_timeout: 1s
scrape_configs:
  - job_name: shoal
    http_sd_configs:
      - url: http://%s/sd/prometheus
        refresh_interval: 2s
    relabel_configs:
      - source_labels: [__meta_shoal_node_id]
        target_label: node_id
`, metricsAddr(m))
	promStart := time.Now()
	prom := StartPrometheus(m, cfg)
	report(t, "prometheus ready on %s: %.2fs", prom.Addr, time.Since(promStart).Seconds())

	// Every host is a target, found through the manager, and up.
	want := map[string]string{} // instance -> node ID
	for _, h := range c.Hosts() {
		want[metricsAddr(h)] = c.IDs[h.Name]
	}
	d := prom.Eventually(t, promTimeout, `up{job="shoal"}`, func(samples []Sample) error {
		got := map[string]string{}
		for _, s := range samples {
			inst := s.Labels["instance"]
			if s.Value != 1 {
				return fmt.Errorf("target %s: up %v, want 1", inst, s.Value)
			}
			got[inst] = s.Labels["node_id"]
		}
		if !maps.Equal(got, want) {
			return fmt.Errorf("up targets (instance: node_id): got %v, want %v", got, want)
		}
		return nil
	})
	report(t, "up{job=\"shoal\"} is 1 for all %d nodes: %.2fs after prometheus started", len(want), d.Seconds())

	replicasRunning := func(n float64) func([]Sample) error {
		return func(samples []Sample) error {
			if len(samples) == 0 {
				return fmt.Errorf("no series")
			}
			for _, s := range samples {
				if s.Value != n {
					return fmt.Errorf("%s: got %v, want %v", s.Labels["instance"], s.Value, n)
				}
			}
			return nil
		}
	}
	const q = `shoal_service_replicas_running{service="web"}`
	created := time.Now()
	if _, err := m.Shoal("service", "create", "--name", "web", "--replicas", "3", "--detach", c.Image); err != nil {
		t.Fatal(err)
	}
	prom.Eventually(t, convergeTimeout, q, replicasRunning(3))
	report(t, "%s = 3 in prometheus: %.2fs after service create", q, time.Since(created).Seconds())

	scaled := time.Now()
	if _, err := m.Shoal("service", "scale", "web=5"); err != nil {
		t.Fatal(err)
	}
	prom.Eventually(t, convergeTimeout, q, replicasRunning(5))
	report(t, "%s = 5 in prometheus: %.2fs after service scale web=5", q, time.Since(scaled).Seconds())

	// The metric agrees with what the cluster says.
	tasks, err := Tasks(m, "web")
	if err != nil {
		t.Fatal(err)
	}
	if got := len(Live(tasks)); got != 5 {
		t.Errorf("service ps web: got %d running tasks, want 5: %s", got, c.TaskSummary(tasks))
	}
	samples, err := prom.Query(`shoal_service_replicas_desired{service="web"}`)
	if err != nil {
		t.Fatal(err)
	}
	if got := values(samples); len(got) == 0 || slices.ContainsFunc(got, func(v float64) bool { return v != 5 }) {
		t.Errorf("shoal_service_replicas_desired{service=\"web\"}: got %v, want 5 from every manager", got)
	}
}

// values are the samples' values.
func values(samples []Sample) []float64 {
	var out []float64
	for _, s := range samples {
		out = append(out, s.Value)
	}
	return out
}
