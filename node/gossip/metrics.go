package gossip

import "github.com/prometheus/client_golang/prometheus"

var membersDesc = prometheus.NewDesc(
	"shoal_gossip_members",
	"Members known to this node's gossip (itself included), by state.",
	[]string{"state"}, nil,
)

// collector computes member counts at scrape time from the tracked states.
type collector struct{ g *Gossip }

func (c collector) Describe(ch chan<- *prometheus.Desc) { ch <- membersDesc }

func (c collector) Collect(ch chan<- prometheus.Metric) {
	counts := map[MemberState]int{}
	c.g.mu.Lock()
	for _, m := range c.g.members {
		counts[m.State]++
	}
	c.g.mu.Unlock()
	for _, s := range []MemberState{StateAlive, StateSuspect, StateDead, StateLeft} {
		ch <- prometheus.MustNewConstMetric(membersDesc, prometheus.GaugeValue, float64(counts[s]), string(s))
	}
}
