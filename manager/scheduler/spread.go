package scheduler

import (
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/shoal-dev/shoal/api"
)

// MaxReplicasFilter drops nodes that already hold Max tasks of the service
// (Placement.MaxReplicas, --replicas-max-per-node). It is dynamic: every
// placement counts.
type MaxReplicasFilter struct {
	Service string
	Max     uint64
}

func (f MaxReplicasFilter) Check(n *NodeInfo) bool {
	return f.Max == 0 || uint64(n.ServiceTasks[f.Service]) < f.Max
}

func (f MaxReplicasFilter) Explain(n int) string {
	return "max replicas per node (" + strconv.FormatUint(f.Max, 10) + ") reached on " + nodes(n)
}

// taskPipeline is NewPipeline for a task: with the service's cap of tasks
// per node, just before the tasks-starting cap, so that a node dropped by
// the last filter only waits for its tasks to start.
func taskPipeline(t *api.Task) (*Pipeline, error) {
	p, err := NewPipeline(&t.Spec)
	if err != nil {
		return nil, err
	}
	if m := t.Spec.Placement.MaxReplicas; m > 0 {
		at := len(p.filters)
		if i := slices.IndexFunc(p.filters, isStarting); i >= 0 {
			at = i
		}
		p.filters = slices.Insert(p.filters, at, Filter(MaxReplicasFilter{Service: t.ServiceID, Max: m}))
		p.failures = make([]int, len(p.filters))
	}
	return p, nil
}

func isStarting(f Filter) bool { _, ok := f.(StartingFilter); return ok }

// prefsKey is a group key's part for placement preferences and the cap per
// node: tasks that differ in them are placed apart.
func prefsKey(pl *api.Placement) string {
	if len(pl.Preferences) == 0 && pl.MaxReplicas == 0 {
		return ""
	}
	var b strings.Builder
	b.WriteString(strconv.FormatUint(pl.MaxReplicas, 10))
	for _, p := range pl.Preferences {
		b.WriteByte(0)
		b.WriteString(p.Spread)
	}
	return b.String()
}

// branch is a node of the preference tree: the nodes whose labels have one
// value at each level so far. Leaves hold the eligible nodes in a heap.
type branch struct {
	value string
	// count is the tasks of the service on the branch's nodes, placements
	// of this call (and tasks left waiting for the branch) included.
	count    int32
	children []*branch
	byValue  map[string]*branch
	parent   *branch
	// Leaves: eligible nodes that can take a task now, and how many
	// eligible nodes only wait for their tasks to start.
	heap    nodeHeap
	waiting int
	// exhausted: no node under it can take a task in this call.
	exhausted bool
}

func (b *branch) child(v string) *branch {
	if c, ok := b.byValue[v]; ok {
		return c
	}
	if b.byValue == nil {
		b.byValue = make(map[string]*branch)
	}
	c := &branch{value: v, parent: b}
	b.byValue[v] = c
	b.children = append(b.children, c)
	return c
}

// leafOf returns the leaf of node n, making the branches on the way.
func (b *branch) leafOf(n *api.Node, labels []string) *branch {
	for _, l := range labels {
		v := ""
		if n != nil {
			v = n.Spec.Labels[l]
		}
		b = b.child(v)
	}
	return b
}

// placePreferred places a group of tasks with placement preferences, as
// Swarm's spread: at each level, from the first preference on, a task goes
// to the value (nodes without the label are one more value) holding the
// fewest tasks of the service, ties in value order; in the leaf it goes to
// the node the heap ranks first. A value none of whose nodes can take a task
// is left out, so its share goes to the others (preferences are not
// constraints); a value whose nodes only wait for their tasks to start keeps
// its share, and the tasks that fall to it wait, so a burst does not skew
// the split.
func (r *run) placePreferred(p *Pipeline, constraints string, pending []*api.Task, ts []int, placed []int32, reasons []string) {
	first := pending[ts[0]]
	service := first.ServiceID
	prefs := first.Spec.Placement.Preferences
	labels := make([]string, 0, len(prefs))
	descs := make([]string, 0, len(prefs))
	for _, pref := range prefs {
		l, err := pref.SpreadLabel()
		if err != nil {
			for _, ti := range ts {
				reasons[ti] = err.Error()
			}
			return
		}
		labels = append(labels, l)
		descs = append(descs, pref.Spread)
	}
	ss := r.staticFor(p, constraints)
	copy(p.failures[:p.static], ss.failures)
	p.checked = len(r.s.Nodes)
	starting := slices.IndexFunc(p.filters, isStarting)

	root := &branch{}
	holding := r.holding[service]
	for _, i := range holding {
		c := int32(r.s.Nodes[i].ServiceTasks[service])
		r.count[i] = c
		for b := root.leafOf(r.s.Nodes[i].Node, labels); b != nil; b = b.parent {
			b.count += c
		}
	}
	for _, i := range ss.nodes {
		ni := &r.s.Nodes[i]
		leaf := root.leafOf(ni.Node, labels)
		if f := p.failedFrom(ni, p.static); f >= 0 {
			if f == starting {
				leaf.waiting++
			}
			continue
		}
		leaf.heap = append(leaf.heap, candidate{node: i, service: r.count[i], total: int32(len(ni.Tasks)), rank: r.rank[i]})
	}
	for _, i := range holding {
		r.count[i] = 0
	}
	var markExhausted func(b *branch)
	markExhausted = func(b *branch) {
		if b.children == nil {
			b.exhausted = len(b.heap) == 0 && b.waiting == 0
		} else {
			b.exhausted = true
			for _, c := range b.children {
				markExhausted(c)
				b.exhausted = b.exhausted && c.exhausted
			}
			slices.SortFunc(b.children, func(x, y *branch) int { return strings.Compare(x.value, y.value) })
		}
		if b.children == nil {
			b.heap.init()
		}
	}
	markExhausted(root)

	dynamic := p.static < len(p.filters)
	var why string
	for _, ti := range ts {
		if root.exhausted {
			if why == "" {
				why = p.Explain()
			}
			reasons[ti] = why
			continue
		}
		b := root
		for b.children != nil {
			var best *branch
			for _, c := range b.children {
				if !c.exhausted && (best == nil || c.count < best.count) {
					best = c
				}
			}
			b = best
		}
		for a := b; a != nil; a = a.parent {
			a.count++
		}
		if len(b.heap) == 0 { // only nodes waiting for their tasks to start
			reasons[ti] = "no suitable node (" + b.path(descs) + ": " + StartingFilter{Max: MaxStarting}.Explain(b.waiting) + ")"
			continue
		}
		c := &b.heap[0]
		if r.place(c.node, pending[ti]) {
			c.service++
			c.total++
		}
		placed[ti] = c.node
		if !dynamic {
			b.heap.down(0)
			continue
		}
		if f := p.failedFrom(&r.s.Nodes[c.node], p.static); f >= 0 {
			if f == starting {
				b.waiting++
			}
			b.heap.popTop()
			if len(b.heap) == 0 && b.waiting == 0 {
				b.exhausted = true
				for a := b.parent; a != nil && !slices.ContainsFunc(a.children, func(c *branch) bool { return !c.exhausted }); a = a.parent {
					a.exhausted = true
				}
			}
		} else {
			b.heap.down(0)
		}
	}
}

// path names the branch for a reason, "node.labels.zone=a, node.labels.rack=2".
func (b *branch) path(descs []string) string {
	var parts []string
	for a := b; a.parent != nil; a = a.parent {
		parts = append(parts, valueText(descs[len(descs)-1-len(parts)], a.value))
	}
	slices.Reverse(parts)
	return strings.Join(parts, ", ")
}

// valueText names a branch for a reason: "node.labels.zone=a", or
// "no node.labels.zone" for the nodes without the label.
func valueText(desc, value string) string {
	if value == "" {
		return "no " + desc
	}
	return fmt.Sprintf("%s=%s", desc, value)
}

// failedFrom runs the filters from index from and returns the index of the
// first that fails (counting the failure), or -1.
func (p *Pipeline) failedFrom(n *NodeInfo, from int) int {
	for i := from; i < len(p.filters); i++ {
		if !p.filters[i].Check(n) {
			p.failures[i]++
			return i
		}
	}
	return -1
}
