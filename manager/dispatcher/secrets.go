package dispatcher

import (
	"slices"
	"strings"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/shoal-dev/shoal/api"
)

// Secrets and configs go to a node with the tasks that reference them, and
// only for tasks that should run: an answer carries the ones its tasks need
// (the complete set for a complete answer, those of the changed tasks for a
// change), and the agent drops what none of its running tasks references.

// fileMetrics count what the leader sent each node, so a test (or an
// operator) can tell which nodes ever got a secret.
type fileMetrics struct {
	secrets, configs *prometheus.CounterVec
}

func newFileMetrics(reg prometheus.Registerer) *fileMetrics {
	m := &fileMetrics{
		secrets: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "shoal_dispatcher_secrets_sent_total",
			Help: "Secrets sent to a node with its assignments, by node ID (a secret sent again counts again).",
		}, []string{"node"}),
		configs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "shoal_dispatcher_configs_sent_total",
			Help: "Configs sent to a node with its assignments, by node ID.",
		}, []string{"node"}),
	}
	if reg != nil {
		reg.MustRegister(m.secrets, m.configs)
	}
	return m
}

// sent counts the secrets and configs of an answer to nodeID.
func (d *Dispatcher) sent(nodeID string, out api.Assignments) api.Assignments {
	if n := len(out.Secrets); n > 0 {
		d.files.secrets.WithLabelValues(nodeID).Add(float64(n))
	}
	if n := len(out.Configs); n > 0 {
		d.files.configs.WithLabelValues(nodeID).Add(float64(n))
	}
	return out
}

// attachFiles adds to out the secrets and configs its tasks that should run
// reference; h.mu is held.
func (h *hub) attachFiles(out *api.Assignments) {
	seenS, seenC := map[string]bool{}, map[string]bool{}
	for _, t := range out.Tasks {
		if !live(t) {
			continue
		}
		for _, ref := range t.Spec.Secrets {
			if s := h.secrets[ref.ID]; s != nil && !seenS[ref.ID] {
				seenS[ref.ID] = true
				out.Secrets = append(out.Secrets, s)
			}
		}
		for _, ref := range t.Spec.Configs {
			if c := h.configs[ref.ID]; c != nil && !seenC[ref.ID] {
				seenC[ref.ID] = true
				out.Configs = append(out.Configs, c)
			}
		}
	}
	slices.SortFunc(out.Secrets, func(a, b *api.Secret) int { return strings.Compare(a.ID, b.ID) })
	slices.SortFunc(out.Configs, func(a, b *api.Config) int { return strings.Compare(a.ID, b.ID) })
}
