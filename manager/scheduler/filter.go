package scheduler

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/shoal-dev/shoal/api"
)

// Filter is one step of the pipeline: it keeps or drops a node for a task.
type Filter interface {
	// Check reports whether the node passes.
	Check(n *NodeInfo) bool
	// Explain says why n nodes failed, e.g. "3 nodes not ready".
	Explain(n int) string
}

// ReadyFilter drops nodes whose observed state is not ready.
type ReadyFilter struct{}

func (ReadyFilter) Check(n *NodeInfo) bool {
	return n.Node != nil && n.Node.Status.State == api.NodeStateReady
}

func (ReadyFilter) Explain(n int) string { return nodes(n) + " not ready" }

// AvailabilityFilter drops paused and drained nodes.
type AvailabilityFilter struct{}

func (AvailabilityFilter) Check(n *NodeInfo) bool {
	return n.Node != nil && n.Node.Spec.Availability == api.AvailabilityActive
}

func (AvailabilityFilter) Explain(n int) string { return nodes(n) + " not available for new tasks" }

// ConstraintFilter drops nodes that fail one placement constraint.
type ConstraintFilter struct{ Constraint Constraint }

func (f ConstraintFilter) Check(n *NodeInfo) bool {
	return n.Node != nil && f.Constraint.Match(n.Node)
}

func (f ConstraintFilter) Explain(n int) string {
	return nodes(n) + " " + verb(n, "fail") + " constraint " + f.Constraint.String()
}

// CPUFilter drops nodes without NanoCPUs unreserved.
type CPUFilter struct{ NanoCPUs int64 }

func (f CPUFilter) Check(n *NodeInfo) bool {
	return f.NanoCPUs <= 0 || n.AvailableNanoCPUs() >= f.NanoCPUs
}

func (f CPUFilter) Explain(n int) string {
	return nodes(n) + " " + verb(n, "lack") + " CPU: needs " + formatCPUs(f.NanoCPUs)
}

// MemoryFilter drops nodes without MemoryBytes unreserved.
type MemoryFilter struct{ MemoryBytes int64 }

func (f MemoryFilter) Check(n *NodeInfo) bool {
	return f.MemoryBytes <= 0 || n.AvailableMemoryBytes() >= f.MemoryBytes
}

func (f MemoryFilter) Explain(n int) string {
	return nodes(n) + " " + verb(n, "lack") + " memory: needs " + formatBytes(f.MemoryBytes)
}

// MaxStarting is how many tasks a node may have assigned but not running
// yet. A burst (a service of thousands of replicas, a node that comes back
// to an empty cluster) is handed to agents at the pace they start tasks,
// so a task removed meanwhile is never sent, and one slow node does not
// collect a backlog it takes minutes to work through. 16 is four times
// the agent's default of 4 concurrent starts: enough to keep it busy.
const MaxStarting = 16

// StartingFilter drops nodes that already have Max tasks not running yet.
type StartingFilter struct{ Max int }

func (f StartingFilter) Check(n *NodeInfo) bool { return f.Max <= 0 || n.Starting < f.Max }

func (f StartingFilter) Explain(n int) string {
	have := " have "
	if n == 1 {
		have = " has "
	}
	return nodes(n) + have + strconv.Itoa(f.Max) + " tasks starting (the most per node; more go once those run)"
}

// Pipeline runs filters in order and remembers, for each filter, how many
// nodes it was the first to drop, to explain an unplaced task.
type Pipeline struct {
	filters  []Filter
	failures []int
	checked  int
	// static is how many leading filters give the same answer whatever
	// is placed: ready, availability and constraints.
	static int
}

// NewPipeline returns the pipeline for a task spec: ready, availability,
// one filter per constraint, CPU, memory, tasks starting. Static filters
// come first so that the dynamic ones, the only ones placements change, are
// checked last.
func NewPipeline(spec *api.TaskSpec) (*Pipeline, error) {
	cons, err := ParseConstraints(spec.Placement.Constraints)
	if err != nil {
		return nil, err
	}
	fs := make([]Filter, 0, 5+len(cons))
	fs = append(fs, ReadyFilter{}, AvailabilityFilter{})
	for _, c := range cons {
		fs = append(fs, ConstraintFilter{Constraint: c})
	}
	r := spec.Resources.Reservations
	if r.NanoCPUs > 0 {
		fs = append(fs, CPUFilter{NanoCPUs: r.NanoCPUs})
	}
	if r.MemoryBytes > 0 {
		fs = append(fs, MemoryFilter{MemoryBytes: r.MemoryBytes})
	}
	fs = append(fs, StartingFilter{Max: MaxStarting})
	p := NewPipelineOf(fs...)
	p.static = 2 + len(cons)
	return p, nil
}

// NewPipelineOf returns a pipeline of the given filters.
func NewPipelineOf(filters ...Filter) *Pipeline {
	return &Pipeline{filters: filters, failures: make([]int, len(filters))}
}

// Check runs the filters on n, stopping at the first that fails, and
// counts that failure.
func (p *Pipeline) Check(n *NodeInfo) bool {
	p.checked++
	return p.checkFrom(n, 0)
}

// checkFrom runs the filters from the one at index from.
func (p *Pipeline) checkFrom(n *NodeInfo, from int) bool {
	for i := from; i < len(p.filters); i++ {
		if !p.filters[i].Check(n) {
			p.failures[i]++
			return false
		}
	}
	return true
}

// Reset forgets the failures counted so far.
func (p *Pipeline) Reset() {
	clear(p.failures)
	p.checked = 0
}

// Explain says why no node was found, e.g. "no suitable node (2 nodes not
// ready; 1 node lacks memory: needs 512 MiB)".
func (p *Pipeline) Explain() string {
	var parts []string
	for i, f := range p.filters {
		if p.failures[i] > 0 {
			parts = append(parts, f.Explain(p.failures[i]))
		}
	}
	if len(parts) == 0 {
		if p.checked == 0 {
			return "no suitable node (no nodes in the cluster)"
		}
		return "no suitable node"
	}
	return "no suitable node (" + strings.Join(parts, "; ") + ")"
}

func nodes(n int) string {
	if n == 1 {
		return "1 node"
	}
	return strconv.Itoa(n) + " nodes"
}

// verb conjugates a plural verb for n nodes: "fail" -> "fails" for one.
func verb(n int, v string) string {
	if n == 1 {
		return v + "s"
	}
	return v
}

func formatCPUs(nano int64) string {
	s := strconv.FormatFloat(float64(nano)/1e9, 'f', -1, 64)
	if nano == 1e9 {
		return s + " CPU"
	}
	return s + " CPUs"
}

func formatBytes(b int64) string {
	const (
		kib = 1 << 10
		mib = 1 << 20
		gib = 1 << 30
	)
	switch {
	case b >= gib && b%gib == 0:
		return fmt.Sprintf("%d GiB", b/gib)
	case b >= mib && b%mib == 0:
		return fmt.Sprintf("%d MiB", b/mib)
	case b >= kib && b%kib == 0:
		return fmt.Sprintf("%d KiB", b/kib)
	}
	return fmt.Sprintf("%d bytes", b)
}
