package raft

import (
	"errors"
	"fmt"

	hraft "github.com/hashicorp/raft"
	"github.com/prometheus/client_golang/prometheus"
)

// metrics are this node's raft metrics. Gauges are read from raft at scrape time.
type metrics struct {
	leaderChanges prometheus.Counter
	applyDuration prometheus.Histogram
	sizeSnapshots prometheus.Counter
	collector     *collector
	registered    []prometheus.Collector
	reg           prometheus.Registerer
}

func newMetrics(r *Raft) *metrics {
	return &metrics{
		leaderChanges: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "shoal_raft_leader_changes_total",
			Help: "Leader elections observed by this node (a new leader became known).",
		}),
		applyDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "shoal_raft_apply_duration_seconds",
			Help:    "Time from submitting an entry on the leader to its commit and FSM apply.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5},
		}),
		sizeSnapshots: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "shoal_raft_size_snapshots_total",
			Help: "Snapshots taken because the log since the last one outgrew it (or 1 MiB), not by entry count.",
		}),
		collector: newCollector(r),
	}
}

// register adds the metrics to reg; nil reg registers nothing.
func (m *metrics) register(reg prometheus.Registerer) error {
	if reg == nil {
		return nil
	}
	m.reg = reg
	for _, c := range []prometheus.Collector{m.leaderChanges, m.applyDuration, m.sizeSnapshots, m.collector} {
		if err := reg.Register(c); err != nil {
			m.unregister()
			var are prometheus.AlreadyRegisteredError
			if errors.As(err, &are) {
				return fmt.Errorf("raft: register metrics: already registered (another raft on this registry?): %w", err)
			}
			return fmt.Errorf("raft: register metrics: %w", err)
		}
		m.registered = append(m.registered, c)
	}
	return nil
}

func (m *metrics) unregister() {
	for _, c := range m.registered {
		m.reg.Unregister(c)
	}
	m.registered = nil
}

// collector exposes raft's state as gauges, computed when scraped.
type collector struct {
	r                                       *Raft
	leader, term, commitIndex, appliedIndex *prometheus.Desc
	voters                                  *prometheus.Desc
}

func newCollector(r *Raft) *collector {
	return &collector{
		r:            r,
		leader:       prometheus.NewDesc("shoal_raft_leader", "1 if this node is the raft leader, else 0.", nil, nil),
		term:         prometheus.NewDesc("shoal_raft_term", "Current raft term.", nil, nil),
		commitIndex:  prometheus.NewDesc("shoal_raft_commit_index", "Highest log index known to be committed.", nil, nil),
		appliedIndex: prometheus.NewDesc("shoal_raft_applied_index", "Highest log index handed to the FSM.", nil, nil),
		voters:       prometheus.NewDesc("shoal_raft_voters", "Voters in the latest raft configuration.", nil, nil),
	}
}

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.leader
	ch <- c.term
	ch <- c.commitIndex
	ch <- c.appliedIndex
	ch <- c.voters
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	hr := c.r.raft
	leader := 0.0
	if hr.State() == hraft.Leader {
		leader = 1
	}
	ch <- prometheus.MustNewConstMetric(c.leader, prometheus.GaugeValue, leader)
	ch <- prometheus.MustNewConstMetric(c.term, prometheus.GaugeValue, float64(hr.CurrentTerm()))
	ch <- prometheus.MustNewConstMetric(c.commitIndex, prometheus.GaugeValue, float64(hr.CommitIndex()))
	ch <- prometheus.MustNewConstMetric(c.appliedIndex, prometheus.GaugeValue, float64(hr.AppliedIndex()))
	if f := hr.GetConfiguration(); f.Error() == nil {
		voters := 0
		for _, s := range f.Configuration().Servers {
			if s.Suffrage == hraft.Voter {
				voters++
			}
		}
		ch <- prometheus.MustNewConstMetric(c.voters, prometheus.GaugeValue, float64(voters))
	}
}
