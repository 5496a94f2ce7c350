package scheduler

import (
	"strconv"
	"strings"

	"github.com/shoal-dev/shoal/api"
)

// HostPortFilter drops nodes where a task already holds one of the host-mode
// ports a task needs (same protocol and port, on the same address or one of
// them on every address): a host port is bound on the node itself, so only
// one task per node can have it. It is dynamic: placing a task takes its
// ports on that node.
type HostPortFilter struct{ Ports []api.PortConfig }

func (f HostPortFilter) Check(n *NodeInfo) bool {
	for _, t := range n.Tasks {
		for _, held := range t.HostPorts {
			for _, p := range f.Ports {
				if p.Clashes(held) {
					return false
				}
			}
		}
	}
	return true
}

func (f HostPortFilter) Explain(n int) string {
	names := make([]string, len(f.Ports))
	for i, p := range f.Ports {
		names[i] = hostPortName(p)
	}
	have := " have "
	if n == 1 {
		have = " has "
	}
	return nodes(n) + have + "host port " + strings.Join(names, ", ") + " in use"
}

func hostPortName(p api.PortConfig) string {
	s := p.PublishedIP
	if s != "" {
		s += ":"
	}
	return s + strconv.Itoa(int(p.Published)) + "/" + p.Proto()
}

// withHostPorts adds a HostPortFilter to p, last, when t needs host ports.
func withHostPorts(p *Pipeline, t *api.Task) {
	if len(t.HostPorts) == 0 {
		return
	}
	p.filters = append(p.filters, HostPortFilter{Ports: t.HostPorts})
	p.failures = append(p.failures, 0)
}

// hostPortsKey tells apart tasks of one service that need other host ports
// (during an update that changes them), so they are filtered apart.
func hostPortsKey(t *api.Task) string {
	if len(t.HostPorts) == 0 {
		return ""
	}
	names := make([]string, len(t.HostPorts))
	for i, p := range t.HostPorts {
		names[i] = hostPortName(p)
	}
	return strings.Join(names, ",")
}
