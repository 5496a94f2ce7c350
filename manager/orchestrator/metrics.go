package orchestrator

import "github.com/prometheus/client_golang/prometheus"

type metrics struct {
	created   prometheus.Counter
	reconcile prometheus.Histogram
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		created: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "shoal_orchestrator_tasks_created_total",
			Help: "Tasks created by the orchestrator (new slots, replacements, restarts, updates).",
		}),
		reconcile: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "shoal_orchestrator_reconcile_duration_seconds",
			Help:    "Time of one orchestrator pass over every service, writes included.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 4, 10),
		}),
	}
	if reg != nil {
		reg.MustRegister(m.created, m.reconcile)
	}
	return m
}
