package scheduler

import (
	"slices"
	"strings"

	"github.com/shoal-dev/shoal/api"
)

// Decision assigns a task to a node.
type Decision struct {
	TaskID, NodeID string
}

// Unplaced is a task no node could take, and why.
type Unplaced struct {
	TaskID, Reason string
}

// Result is what one Schedule call decided, each list in the order of the
// pending tasks.
type Result struct {
	Decisions []Decision
	Unplaced  []Unplaced
}

// groupKey holds what filtering depends on: tasks with the same key see the
// same eligible nodes, so the nodes are filtered once per group.
type groupKey struct {
	pinned      bool
	service     string
	nanoCPUs    int64
	memoryBytes int64
	constraints string
	prefs       string // preferences and the cap per node (prefsKey)
	hostPorts   string
}

func keyOf(t *api.Task) groupKey {
	r := t.Spec.Resources.Reservations
	k := groupKey{
		pinned:      t.NodeID != "",
		service:     t.ServiceID,
		nanoCPUs:    r.NanoCPUs,
		memoryBytes: r.MemoryBytes,
		prefs:       prefsKey(&t.Spec.Placement),
		hostPorts:   hostPortsKey(t),
	}
	switch cs := t.Spec.Placement.Constraints; len(cs) {
	case 0:
	case 1:
		k.constraints = cs[0]
	default:
		k.constraints = strings.Join(cs, "\x00")
	}
	return k
}

// Schedule places pending tasks on the nodes of s and updates s with every
// placement, so each task sees the ones before it.
//
// A node is eligible for a task when it is ready, active, satisfies every
// constraint and has the task's reservations free. A task that already
// names its node (a global service's task) is checked against that node
// only. Any other task goes to the eligible node with the fewest tasks of
// its service, then the fewest tasks, then the smallest ID; with placement
// preferences it first goes to the label value with the fewest tasks of its
// service (placePreferred). Placement.MaxReplicas caps a service's tasks
// per node.
//
// Tasks are handled in groups of the same service, reservations and
// constraints, in the order each group first appears in pending; groups of
// pinned tasks go first, since those tasks have no other choice. Schedule
// does not modify the tasks; it adds the placed ones to their nodes' Tasks.
// Pending tasks must not already be counted against a node of s.
func Schedule(s *Snapshot, pending []*api.Task) Result {
	s.prepare()

	var groups [][]int // positions in pending
	keys := make(map[groupKey]int)
	services := make(map[string]bool)
	for i, t := range pending {
		if t == nil {
			continue
		}
		k := keyOf(t)
		g, ok := keys[k]
		if !ok {
			g = len(groups)
			keys[k] = g
			groups = append(groups, nil)
			services[t.ServiceID] = true
		}
		groups[g] = append(groups[g], i)
	}
	order := make([]int, 0, len(groups))
	for g, ts := range groups {
		if pending[ts[0]].NodeID != "" {
			order = append(order, g)
		}
	}
	for g, ts := range groups {
		if pending[ts[0]].NodeID == "" {
			order = append(order, g)
		}
	}

	r := newRun(s, services)
	placed := make([]int32, len(pending))
	for i := range placed {
		placed[i] = -1
	}
	reasons := make([]string, len(pending))
	for _, g := range order {
		ts := groups[g]
		first := pending[ts[0]]
		p, err := taskPipeline(first)
		if err != nil {
			for _, ti := range ts {
				reasons[ti] = err.Error()
			}
			continue
		}
		withHostPorts(p, first)
		switch {
		case first.NodeID != "":
			r.placePinned(p, pending, ts, placed, reasons)
		case len(first.Spec.Placement.Preferences) > 0:
			r.placePreferred(p, keyOf(first).constraints, pending, ts, placed, reasons)
		default:
			r.placeSpread(p, keyOf(first).constraints, pending, ts, placed, reasons)
		}
	}

	res := Result{Decisions: make([]Decision, 0, len(pending))}
	for i, t := range pending {
		switch {
		case t == nil:
		case placed[i] >= 0:
			res.Decisions = append(res.Decisions, Decision{TaskID: t.ID, NodeID: s.Nodes[placed[i]].Node.ID})
		default:
			res.Unplaced = append(res.Unplaced, Unplaced{TaskID: t.ID, Reason: reasons[i]})
		}
	}
	return res
}

// run is the state of one Schedule call.
type run struct {
	s *Snapshot
	// rank orders the nodes by ID, so the heap compares integers.
	rank []int32
	// holding lists, for each pending service, the nodes with tasks of it;
	// a node that is not listed has none.
	holding map[string][]int32
	// count is scratch, by node: tasks of the service being placed.
	count []int32
	// static caches, by constraints, the nodes that pass the static
	// filters and how many failed each of them.
	static map[string]*staticSet
	heap   nodeHeap
	// shapes caches the preference trees, by label list (spread.go).
	shapes map[string]*shape
}

type staticSet struct {
	nodes    []int32
	failures []int
}

func newRun(s *Snapshot, services map[string]bool) *run {
	r := &run{
		s:       s,
		rank:    make([]int32, len(s.Nodes)),
		holding: make(map[string][]int32),
		count:   make([]int32, len(s.Nodes)),
		static:  make(map[string]*staticSet),
	}
	byID := make([]int32, len(s.Nodes))
	for i := range byID {
		byID[i] = int32(i)
	}
	id := func(i int32) string {
		if n := s.Nodes[i].Node; n != nil {
			return n.ID
		}
		return ""
	}
	less := func(a, b int32) int { return strings.Compare(id(a), id(b)) }
	if !slices.IsSortedFunc(byID, less) {
		slices.SortFunc(byID, less)
	}
	for rank, i := range byID {
		r.rank[i] = int32(rank)
	}
	for i := range s.Nodes {
		for svc := range s.Nodes[i].ServiceTasks {
			if services[svc] {
				r.holding[svc] = append(r.holding[svc], int32(i))
			}
		}
	}
	return r
}

// place counts t against node i.
func (r *run) place(i int32, t *api.Task) bool {
	ni := &r.s.Nodes[i]
	if !ni.AddTask(t) {
		return false
	}
	if ni.ServiceTasks[t.ServiceID] == 1 {
		r.holding[t.ServiceID] = append(r.holding[t.ServiceID], i)
	}
	return true
}

// placePinned checks each task of a pinned group against its own node.
func (r *run) placePinned(p *Pipeline, pending []*api.Task, ts []int, placed []int32, reasons []string) {
	for _, ti := range ts {
		t := pending[ti]
		i, ok := r.s.index[t.NodeID]
		if !ok {
			reasons[ti] = "no suitable node (node " + t.NodeID + " not in the cluster)"
			continue
		}
		p.Reset()
		if !p.Check(&r.s.Nodes[i]) {
			reasons[ti] = p.Explain()
			continue
		}
		r.place(int32(i), t)
		placed[ti] = int32(i)
	}
}

// placeSpread places a group of tasks that may go to any node: it filters
// the nodes once into a heap, then gives each task the heap's top.
func (r *run) placeSpread(p *Pipeline, constraints string, pending []*api.Task, ts []int, placed []int32, reasons []string) {
	service := pending[ts[0]].ServiceID
	ss := r.staticFor(p, constraints)
	copy(p.failures[:p.static], ss.failures)
	p.checked = len(r.s.Nodes)

	holding := r.holding[service]
	for _, i := range holding {
		r.count[i] = int32(r.s.Nodes[i].ServiceTasks[service])
	}
	h := r.heap[:0]
	for _, i := range ss.nodes {
		ni := &r.s.Nodes[i]
		if !p.checkFrom(ni, p.static) {
			continue
		}
		h = append(h, candidate{node: i, service: r.count[i], total: int32(len(ni.Tasks)), rank: r.rank[i]})
	}
	for _, i := range holding {
		r.count[i] = 0
	}
	h.init()

	dynamic := p.static < len(p.filters)
	var why string
	for _, ti := range ts {
		if len(h) == 0 {
			if why == "" {
				why = p.Explain()
			}
			reasons[ti] = why
			continue
		}
		c := &h[0]
		if r.place(c.node, pending[ti]) {
			c.service++
			c.total++
		}
		placed[ti] = c.node
		// Only the resource filters can change their answer, and only for
		// the node that took the task.
		if dynamic && !p.checkFrom(&r.s.Nodes[c.node], p.static) {
			h.popTop()
		} else {
			h.down(0)
		}
	}
	r.heap = h
}

// staticFor runs p's static filters over every node, once per constraints.
func (r *run) staticFor(p *Pipeline, constraints string) *staticSet {
	if ss, ok := r.static[constraints]; ok {
		return ss
	}
	ss := &staticSet{}
	for i := range r.s.Nodes {
		ni := &r.s.Nodes[i]
		ok := true
		for f := range p.static {
			if !p.filters[f].Check(ni) {
				p.failures[f]++
				ok = false
				break
			}
		}
		if ok {
			ss.nodes = append(ss.nodes, int32(i))
		}
	}
	ss.failures = slices.Clone(p.failures[:p.static])
	r.static[constraints] = ss
	return ss
}

// candidate is an eligible node with the counts the heap orders it by.
type candidate struct {
	node    int32
	service int32
	total   int32
	rank    int32
}

func (a *candidate) less(b *candidate) bool {
	if a.service != b.service {
		return a.service < b.service
	}
	if a.total != b.total {
		return a.total < b.total
	}
	return a.rank < b.rank
}

// nodeHeap is a binary min-heap of candidates.
type nodeHeap []candidate

func (h nodeHeap) init() {
	for i := len(h)/2 - 1; i >= 0; i-- {
		h.down(i)
	}
}

func (h nodeHeap) down(i int) {
	n := len(h)
	for {
		l := 2*i + 1
		if l >= n {
			return
		}
		m := l
		if r := l + 1; r < n && h[r].less(&h[l]) {
			m = r
		}
		if !h[m].less(&h[i]) {
			return
		}
		h[i], h[m] = h[m], h[i]
		i = m
	}
}

func (h *nodeHeap) popTop() {
	old := *h
	n := len(old) - 1
	old[0] = old[n]
	*h = old[:n]
	h.down(0)
}
