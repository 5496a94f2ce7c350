package allocator

import "github.com/prometheus/client_golang/prometheus"

type metrics struct {
	allocated prometheus.Counter
	waiting   prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		allocated: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "shoal_allocator_addresses_allocated_total",
			Help: "Addresses written by the allocator: task attachments and service virtual IPs.",
		}),
		waiting: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "shoal_allocator_waiting_tasks",
			Help: "Tasks that could not get all their network addresses in the last pass.",
		}),
	}
	if reg != nil {
		reg.MustRegister(m.allocated, m.waiting)
	}
	return m
}
