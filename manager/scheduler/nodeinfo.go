package scheduler

import (
	"sort"

	"github.com/shoal-dev/shoal/api"
)

// NodeInfo is a node and the tasks that count against it, with the counts
// and reservations derived from them. Keep the derived fields consistent by
// going through NewNodeInfo, AddTask and RemoveTask; a NodeInfo built as a
// literal is counted from its Tasks the first time Schedule sees it.
type NodeInfo struct {
	Node *api.Node
	// Tasks that count against the node (assigned and not terminal, see
	// CountsAgainstNode), by ID.
	Tasks map[string]*api.Task

	// ServiceTasks counts Tasks by service ID.
	ServiceTasks map[string]int
	// ReservedNanoCPUs and ReservedMemoryBytes sum the Tasks' reservations.
	ReservedNanoCPUs    int64
	ReservedMemoryBytes int64
	// Starting counts the Tasks not running yet: assigned to the node (or
	// being placed on it) but not reported running by its agent.
	Starting int

	counted bool
}

// CountsAgainstNode reports whether t holds a place on its node: it has a
// node and is assigned or later but not terminal. Pending tasks, even those
// of global services that already name their node, do not count.
func CountsAgainstNode(t *api.Task) bool {
	return t != nil && t.NodeID != "" && !t.Status.State.Before(api.TaskAssigned) && !t.Status.State.Terminal()
}

// starting reports whether a counted task is not running yet.
func starting(t *api.Task) bool { return t.Status.State.Before(api.TaskRunning) }

// NewNodeInfo returns n with every task in tasks counted against it; the
// caller picks the tasks (see CountsAgainstNode).
func NewNodeInfo(n *api.Node, tasks []*api.Task) NodeInfo {
	ni := NodeInfo{
		Node:         n,
		Tasks:        make(map[string]*api.Task, len(tasks)),
		ServiceTasks: make(map[string]int),
		counted:      true,
	}
	for _, t := range tasks {
		ni.AddTask(t)
	}
	return ni
}

// count derives ServiceTasks and the reservations from Tasks.
func (ni *NodeInfo) count() {
	ni.ServiceTasks = make(map[string]int)
	ni.ReservedNanoCPUs, ni.ReservedMemoryBytes, ni.Starting = 0, 0, 0
	for _, t := range ni.Tasks {
		ni.ServiceTasks[t.ServiceID]++
		if starting(t) {
			ni.Starting++
		}
		r := t.Spec.Resources.Reservations
		ni.ReservedNanoCPUs += r.NanoCPUs
		ni.ReservedMemoryBytes += r.MemoryBytes
	}
	ni.counted = true
}

// AddTask counts t against the node; it reports false if t is nil or
// already counted.
func (ni *NodeInfo) AddTask(t *api.Task) bool {
	if t == nil {
		return false
	}
	if !ni.counted {
		ni.count()
	}
	if _, ok := ni.Tasks[t.ID]; ok {
		return false
	}
	if ni.Tasks == nil {
		ni.Tasks = make(map[string]*api.Task)
	}
	ni.Tasks[t.ID] = t
	ni.ServiceTasks[t.ServiceID]++
	if starting(t) {
		ni.Starting++
	}
	r := t.Spec.Resources.Reservations
	ni.ReservedNanoCPUs += r.NanoCPUs
	ni.ReservedMemoryBytes += r.MemoryBytes
	return true
}

// RemoveTask stops counting the task with this ID; it reports false if the
// task was not counted.
func (ni *NodeInfo) RemoveTask(id string) bool {
	if !ni.counted {
		ni.count()
	}
	t, ok := ni.Tasks[id]
	if !ok {
		return false
	}
	delete(ni.Tasks, id)
	if starting(t) {
		ni.Starting--
	}
	if ni.ServiceTasks[t.ServiceID]--; ni.ServiceTasks[t.ServiceID] <= 0 {
		delete(ni.ServiceTasks, t.ServiceID)
	}
	r := t.Spec.Resources.Reservations
	ni.ReservedNanoCPUs -= r.NanoCPUs
	ni.ReservedMemoryBytes -= r.MemoryBytes
	return true
}

// AvailableNanoCPUs is the node's CPUs (in billionths) not yet reserved.
func (ni *NodeInfo) AvailableNanoCPUs() int64 {
	if ni.Node == nil {
		return 0
	}
	return int64(ni.Node.Description.CPUs)*1e9 - ni.ReservedNanoCPUs
}

// AvailableMemoryBytes is the node's memory not yet reserved.
func (ni *NodeInfo) AvailableMemoryBytes() int64 {
	if ni.Node == nil {
		return 0
	}
	return ni.Node.Description.MemoryBytes - ni.ReservedMemoryBytes
}

// Snapshot is the cluster as the scheduler sees it. Schedule updates it as
// it places tasks, so the next batch sees the placements of this one.
type Snapshot struct {
	Nodes []NodeInfo

	index map[string]int
}

// NewSnapshot builds a snapshot of nodes, sorted by ID, counting against
// each node the tasks in tasks that CountsAgainstNode. Tasks on nodes not in
// nodes are ignored.
func NewSnapshot(nodes []*api.Node, tasks []*api.Task) *Snapshot {
	s := &Snapshot{Nodes: make([]NodeInfo, 0, len(nodes))}
	for _, n := range nodes {
		if n != nil {
			s.Nodes = append(s.Nodes, NodeInfo{Node: n, Tasks: map[string]*api.Task{}, ServiceTasks: map[string]int{}, counted: true})
		}
	}
	sort.Slice(s.Nodes, func(i, j int) bool { return s.Nodes[i].Node.ID < s.Nodes[j].Node.ID })
	s.reindex()
	for _, t := range tasks {
		if !CountsAgainstNode(t) {
			continue
		}
		if i, ok := s.index[t.NodeID]; ok {
			s.Nodes[i].AddTask(t)
		}
	}
	return s
}

// Node returns the node with this ID, or nil.
func (s *Snapshot) Node(id string) *NodeInfo {
	if i, ok := s.index[id]; ok && i < len(s.Nodes) && s.Nodes[i].Node != nil && s.Nodes[i].Node.ID == id {
		return &s.Nodes[i]
	}
	s.reindex()
	if i, ok := s.index[id]; ok {
		return &s.Nodes[i]
	}
	return nil
}

// reindex maps node IDs to positions in Nodes; the first of duplicates wins.
func (s *Snapshot) reindex() {
	s.index = make(map[string]int, len(s.Nodes))
	for i := range s.Nodes {
		n := s.Nodes[i].Node
		if n == nil {
			continue
		}
		if _, dup := s.index[n.ID]; !dup {
			s.index[n.ID] = i
		}
	}
}

// prepare counts nodes built as literals and indexes the nodes.
func (s *Snapshot) prepare() {
	for i := range s.Nodes {
		if !s.Nodes[i].counted {
			s.Nodes[i].count()
		}
	}
	s.reindex()
}
