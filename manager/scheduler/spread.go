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

// shape is the preference tree of one list of spread labels over every
// node of the snapshot: branch 0 is the root, each level one label, each
// branch one value (nodes without the label have ""). It depends on the
// nodes' labels only, so one Schedule call builds it once per label list.
type shape struct {
	descs    []string  // the spread descriptors, one a level
	parent   []int32   // by branch; -1 for the root
	value    []string  // by branch
	children [][]int32 // by branch, in value order; nil for leaves
	leafOf   []int32   // by node index: the node's leaf
	leaves   int
}

func newShape(nodes []NodeInfo, labels, descs []string) *shape {
	sh := &shape{descs: descs, parent: []int32{-1}, value: []string{""}, children: [][]int32{nil}, leafOf: make([]int32, len(nodes))}
	type edge struct {
		parent int32
		value  string
	}
	byEdge := make(map[edge]int32)
	for i := range nodes {
		b := int32(0)
		for _, l := range labels {
			v := ""
			if n := nodes[i].Node; n != nil {
				v = n.Spec.Labels[l]
			}
			c, ok := byEdge[edge{b, v}]
			if !ok {
				c = int32(len(sh.parent))
				byEdge[edge{b, v}] = c
				sh.parent = append(sh.parent, b)
				sh.value = append(sh.value, v)
				sh.children = append(sh.children, nil)
				sh.children[b] = append(sh.children[b], c)
			}
			b = c
		}
		sh.leafOf[i] = b
	}
	for b := range sh.children {
		if cs := sh.children[b]; cs != nil {
			slices.SortFunc(cs, func(x, y int32) int { return strings.Compare(sh.value[x], sh.value[y]) })
		} else {
			sh.leaves++
		}
	}
	return sh
}

// path names branch b for a reason, "node.labels.zone=a, node.labels.rack=2".
func (sh *shape) path(b int32) string {
	var parts []string
	for ; sh.parent[b] >= 0; b = sh.parent[b] {
		parts = append(parts, valueText(sh.descs[len(sh.descs)-1-len(parts)], sh.value[b]))
	}
	slices.Reverse(parts)
	return strings.Join(parts, ", ")
}

// shapeFor returns the tree of a group's preferences, built once per call.
func (r *run) shapeFor(prefs []api.PlacementPreference) (*shape, error) {
	labels := make([]string, 0, len(prefs))
	descs := make([]string, 0, len(prefs))
	for _, pref := range prefs {
		l, err := pref.SpreadLabel()
		if err != nil {
			return nil, err
		}
		labels = append(labels, l)
		descs = append(descs, pref.Spread)
	}
	key := strings.Join(labels, "\x00")
	if sh, ok := r.shapes[key]; ok {
		return sh, nil
	}
	if r.shapes == nil {
		r.shapes = make(map[string]*shape)
	}
	sh := newShape(r.s.Nodes, labels, descs)
	r.shapes[key] = sh
	return sh, nil
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
	sh, err := r.shapeFor(first.Spec.Placement.Preferences)
	if err != nil {
		for _, ti := range ts {
			reasons[ti] = err.Error()
		}
		return
	}
	ss := r.staticFor(p, constraints)
	copy(p.failures[:p.static], ss.failures)
	p.checked = len(r.s.Nodes)
	starting := slices.IndexFunc(p.filters, isStarting)

	nb := len(sh.parent)
	count := make([]int32, nb)   // tasks of the service under each branch
	waiting := make([]int32, nb) // leaves: nodes that only wait for starts
	open := make([]int32, nb)    // nodes under each branch that can take a task, or wait
	holding := r.holding[service]
	for _, i := range holding {
		c := int32(r.s.Nodes[i].ServiceTasks[service])
		r.count[i] = c
		for b := sh.leafOf[i]; b >= 0; b = sh.parent[b] {
			count[b] += c
		}
	}
	// The eligible nodes, by leaf: one backing array, a heap per leaf.
	cands := make([]candidate, 0, len(ss.nodes))
	for _, i := range ss.nodes {
		ni := &r.s.Nodes[i]
		if f := p.failedFrom(ni, p.static); f >= 0 {
			if p.onlyWaits(ni, f, starting) {
				waiting[sh.leafOf[i]]++
			}
			continue
		}
		cands = append(cands, candidate{node: i, service: r.count[i], total: int32(len(ni.Tasks)), rank: r.rank[i]})
	}
	for _, i := range holding {
		r.count[i] = 0
	}
	slices.SortFunc(cands, func(a, b candidate) int { return int(sh.leafOf[a.node]) - int(sh.leafOf[b.node]) })
	heaps := make([]nodeHeap, nb)
	for lo := 0; lo < len(cands); {
		leaf := sh.leafOf[cands[lo].node]
		hi := lo + 1
		for hi < len(cands) && sh.leafOf[cands[hi].node] == leaf {
			hi++
		}
		heaps[leaf] = nodeHeap(cands[lo:hi:hi])
		heaps[leaf].init()
		lo = hi
	}
	for b := nb - 1; b >= 0; b-- { // children come after their parent
		if sh.children[b] == nil {
			open[b] = int32(len(heaps[b])) + waiting[b]
		}
		if pb := sh.parent[b]; pb >= 0 {
			open[pb] += open[b]
		}
	}

	dynamic := p.static < len(p.filters)
	var why string
	for _, ti := range ts {
		if open[0] == 0 {
			if why == "" {
				why = p.Explain()
			}
			reasons[ti] = why
			continue
		}
		b := int32(0)
		for sh.children[b] != nil {
			best := int32(-1)
			for _, c := range sh.children[b] {
				if open[c] > 0 && (best < 0 || count[c] < count[best]) {
					best = c
				}
			}
			b = best
		}
		for a := b; a >= 0; a = sh.parent[a] {
			count[a]++
		}
		h := heaps[b]
		if len(h) == 0 { // only nodes waiting for their tasks to start
			reasons[ti] = "no suitable node (" + sh.path(b) + ": " + StartingFilter{Max: MaxStarting}.Explain(int(waiting[b])) + ")"
			continue
		}
		c := &h[0]
		if r.place(c.node, pending[ti]) {
			c.service++
			c.total++
		}
		placed[ti] = c.node
		if !dynamic {
			h.down(0)
			continue
		}
		f := p.failedFrom(&r.s.Nodes[c.node], p.static)
		if f < 0 {
			h.down(0)
			continue
		}
		h.popTop()
		heaps[b] = h
		if p.onlyWaits(&r.s.Nodes[c.node], f, starting) {
			waiting[b]++ // still open: the node waits
			continue
		}
		for a := b; a >= 0; a = sh.parent[a] {
			open[a]--
		}
	}
}

// valueText names a branch for a reason: "node.labels.zone=a", or
// "without node.labels.zone" for the nodes without the label.
func valueText(desc, value string) string {
	if value == "" {
		return "without " + desc
	}
	return fmt.Sprintf("%s=%s", desc, value)
}

// onlyWaits reports whether a node that failed filter f fails only the
// tasks-starting cap (at index starting): every filter after it passes too
// (filters appended later, like HostPortFilter, come after it).
func (p *Pipeline) onlyWaits(n *NodeInfo, f, starting int) bool {
	if f != starting || f < 0 {
		return false
	}
	for i := f + 1; i < len(p.filters); i++ {
		if !p.filters[i].Check(n) {
			return false
		}
	}
	return true
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
