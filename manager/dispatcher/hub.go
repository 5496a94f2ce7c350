package dispatcher

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"net/netip"
	"reflect"
	"slices"
	"sort"
	"strings"
	"sync"

	"github.com/shoal-dev/shoal/api"
	"github.com/shoal-dev/shoal/store"
)

// maxTombstones bounds the removals kept per node; past it the node gets
// its complete set again.
const maxTombstones = 1024

// hub is the leader's view of what every node is assigned, kept from store
// watches so that an answer costs a lookup instead of a read of the world:
// a task index per node, each entry stamped with the store index of the
// change set that brought it, and the network state, built once per change
// and shared by every node that joins the same networks. Stamps are store
// indexes, so a node can move to a new leader with the index it has.
type hub struct {
	mu sync.Mutex
	// index is the store index the hub reflects; start the index of the
	// snapshot it began from (an older index gets the complete set).
	index, start uint64
	tasks        map[string]*api.Task
	nodes        map[string]*api.Node
	networks     map[string]*api.Network
	services     map[string]*api.Service
	secrets      map[string]*api.Secret
	configs      map[string]*api.Config
	perNode      map[string]*nodeTasks
	net          *netView
	// managers are the managers' endpoints, handed out with every beat.
	managers []api.Endpoints
	// moved is closed, and replaced, whenever the hub moves; all when what
	// every node may see changed (the network view, a reset); perNodeWake[id]
	// when node id's tasks or node object changed. A long poll waits on
	// all and its node's channel only, so a change wakes the nodes it
	// concerns rather than every poll of the cluster.
	moved, all  chan struct{}
	perNodeWake map[string]chan struct{}
}

type stamped struct {
	task  *api.Task
	stamp uint64
}

type nodeTasks struct {
	tasks   map[string]stamped
	removed map[string]uint64
	// horizon: removals stamped at or before it are forgotten.
	horizon uint64
}

func newHub() *hub {
	return &hub{moved: make(chan struct{}), all: make(chan struct{}), perNodeWake: map[string]chan struct{}{}}
}

// run keeps the hub current until ctx ends.
func (h *hub) run(ctx context.Context, st *store.Store) {
	for ctx.Err() == nil {
		events, cancel := st.ViewAndWatchIndex(func(tx store.ReadTx, index uint64) { h.reset(tx, index) })
		h.follow(ctx, st, events)
		cancel()
	}
}

// follow applies events until ctx ends or the hub must start over from a
// fresh snapshot (events dropped, state restored).
func (h *hub) follow(ctx context.Context, st *store.Store, events <-chan store.Event) {
	for {
		var batch []store.Event
		select {
		case <-ctx.Done():
			return
		case ev, ok := <-events:
			if !ok {
				return
			}
			batch = append(batch, ev)
		}
		// Take what else is queued: one pass for a burst of change sets.
	more:
		for len(batch) < store.WatchBuffer {
			select {
			case ev, ok := <-events:
				if !ok {
					return
				}
				batch = append(batch, ev)
			default:
				break more
			}
		}
		for _, ev := range batch {
			if ev.Reset || ev.Dropped > 0 {
				return
			}
		}
		st.View(func(tx store.ReadTx) { h.apply(tx, batch) })
	}
}

// reset rebuilds the hub from a snapshot at index, stamping with index
// whatever differs from what it held.
func (h *hub) reset(tx store.ReadTx, index uint64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	first := h.tasks == nil
	old := h.tasks
	h.tasks, h.nodes, h.networks, h.services = map[string]*api.Task{}, map[string]*api.Node{}, map[string]*api.Network{}, map[string]*api.Service{}
	for _, t := range tx.Tasks() {
		h.tasks[t.ID] = t
	}
	for _, n := range tx.Nodes() {
		h.nodes[n.ID] = n
	}
	for _, n := range tx.Networks() {
		h.networks[n.ID] = n
	}
	for _, s := range tx.Services() {
		h.services[s.ID] = s
	}
	h.secrets, h.configs = map[string]*api.Secret{}, map[string]*api.Config{}
	for _, s := range tx.Secrets() {
		h.secrets[s.ID] = s
	}
	for _, c := range tx.Configs() {
		h.configs[c.ID] = c
	}
	if first {
		h.start, h.perNode = index, map[string]*nodeTasks{}
	}
	for id, t := range old {
		if nt := h.tasks[id]; nt == nil || nt.NodeID != t.NodeID {
			h.remove(t, index)
		}
	}
	for _, t := range h.tasks {
		if o := old[t.ID]; first || o == nil || o.Meta.Version != t.Meta.Version || o.NodeID != t.NodeID {
			h.put(t, index)
		}
	}
	h.index = max(h.index, index)
	h.net = h.buildNet()
	h.managers = h.buildManagers()
	h.wakeAll()
}

// apply brings the objects the events name up to date from tx, a snapshot
// at or after the last event.
func (h *hub) apply(tx store.ReadTx, batch []store.Event) {
	h.mu.Lock()
	defer h.mu.Unlock()
	stamp := batch[len(batch)-1].Index
	netChanged := false
	touched := map[string]bool{}
	for _, ev := range batch {
		for _, c := range ev.Changes {
			switch c.Kind {
			case store.KindTask:
				old, t := h.tasks[c.ID], tx.Task(c.ID)
				if old != nil && (t == nil || t.NodeID != old.NodeID) {
					h.remove(old, stamp)
					touched[old.NodeID] = true
				}
				if t == nil {
					delete(h.tasks, c.ID)
				} else {
					h.tasks[c.ID] = t
					h.put(t, stamp)
					touched[t.NodeID] = true
				}
				netChanged = netChanged || inNetwork(old) || inNetwork(t)
			case store.KindNode:
				setOrDelete(h.nodes, c.ID, tx.Node(c.ID))
				touched[c.ID] = true
				netChanged = true
			case store.KindNetwork:
				setOrDelete(h.networks, c.ID, tx.Network(c.ID))
				netChanged = true
			case store.KindService:
				setOrDelete(h.services, c.ID, tx.Service(c.ID))
				netChanged = true
			case store.KindSecret:
				setOrDelete(h.secrets, c.ID, tx.Secret(c.ID))
			case store.KindConfig:
				setOrDelete(h.configs, c.ID, tx.Config(c.ID))
			}
		}
	}
	h.index = max(h.index, stamp)
	if netChanged {
		old := h.net
		h.net = h.buildNet()
		h.managers = h.buildManagers()
		if !old.same(h.net) {
			h.wakeAll()
			return
		}
		// Same view (a node beat, a task off the networks changed state):
		// keep the old one and the states it already cut.
		h.net = old
	}
	for id := range touched {
		if ch, ok := h.perNodeWake[id]; ok {
			close(ch)
			delete(h.perNodeWake, id)
		}
	}
	close(h.moved)
	h.moved = make(chan struct{})
}

func (h *hub) buildManagers() []api.Endpoints {
	var out []api.Endpoints
	for _, id := range sortedKeys(h.nodes) {
		if n := h.nodes[id]; n.Spec.Role == api.RoleManager && n.Endpoints.API != "" {
			out = append(out, n.Endpoints)
		}
	}
	return out
}

// nodeState is what check needs of a node.
type nodeState struct {
	id    string
	state api.NodeState
}

// nodeStates lists every node and its state; ok is false while the hub
// is behind index.
func (h *hub) nodeStates(index uint64) (out []nodeState, ok bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.nodes == nil || h.index < index {
		return nil, false
	}
	out = make([]nodeState, 0, len(h.nodes))
	for id, n := range h.nodes {
		out = append(out, nodeState{id, n.Status.State})
	}
	return out, true
}

// managerEndpoints is nil until the hub has read the store.
func (h *hub) managerEndpoints() []api.Endpoints {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.managers
}

func setOrDelete[T any](m map[string]*T, id string, v *T) {
	if v == nil {
		delete(m, id)
		return
	}
	m[id] = v
}

// wakeAll wakes every long poll; h.mu must be held.
func (h *hub) wakeAll() {
	close(h.moved)
	close(h.all)
	h.moved, h.all = make(chan struct{}), make(chan struct{})
	for id, ch := range h.perNodeWake {
		close(ch)
		delete(h.perNodeWake, id)
	}
}

// waitFor is what a long poll of nodeID waits on; h.mu must be held.
func (h *hub) waitFor(nodeID string) (moved, all, mine <-chan struct{}) {
	ch, ok := h.perNodeWake[nodeID]
	if !ok {
		ch = make(chan struct{})
		h.perNodeWake[nodeID] = ch
	}
	return h.moved, h.all, ch
}

func (h *hub) node(id string) *nodeTasks {
	nt := h.perNode[id]
	if nt == nil {
		nt = &nodeTasks{tasks: map[string]stamped{}, removed: map[string]uint64{}}
		h.perNode[id] = nt
	}
	return nt
}

func (h *hub) put(t *api.Task, stamp uint64) {
	if t.NodeID == "" {
		return
	}
	nt := h.node(t.NodeID)
	nt.tasks[t.ID] = stamped{t, stamp}
	delete(nt.removed, t.ID)
}

func (h *hub) remove(t *api.Task, stamp uint64) {
	nt := h.perNode[t.NodeID]
	if nt == nil {
		return
	}
	if _, ok := nt.tasks[t.ID]; !ok {
		return
	}
	delete(nt.tasks, t.ID)
	nt.removed[t.ID] = stamp
	if len(nt.removed) > maxTombstones {
		nt.removed, nt.horizon = map[string]uint64{}, stamp
	}
}

// answer is what nodeID gets for since and networkSum, and whether it
// differs from what the node holds.
func (h *hub) answer(nodeID string, since uint64, networkSum string) (api.Assignments, bool) {
	out := api.Assignments{Index: h.index, Tasks: []*api.Task{}}
	nt := h.perNode[nodeID]
	full := since == 0 || since < h.start || (nt != nil && since < nt.horizon)
	changed := full
	switch {
	case full && nt != nil:
		for _, s := range nt.tasks {
			out.Tasks = append(out.Tasks, s.task)
		}
	case !full:
		out.Changes = true
		if nt == nil {
			break
		}
		for _, s := range nt.tasks {
			if s.stamp > since {
				out.Tasks = append(out.Tasks, s.task)
			}
		}
		for id, stamp := range nt.removed {
			if stamp > since {
				out.Removed = append(out.Removed, id)
			} else {
				delete(nt.removed, id) // the node has it
				nt.horizon = max(nt.horizon, stamp)
			}
		}
		changed = len(out.Tasks) > 0 || len(out.Removed) > 0
		slices.Sort(out.Removed)
	}
	slices.SortFunc(out.Tasks, func(a, b *api.Task) int { return strings.Compare(a.ID, b.ID) })
	h.attachFiles(&out)
	out.Network, out.NetworkSum = h.networkOf(nodeID, nt)
	switch {
	case out.NetworkSum != networkSum:
		changed = true
	case !full:
		out.Network, out.NetworkSame = api.NetworkState{}, true
	}
	return out, changed
}

// live reports whether a task holds its addresses: wanted running and not finished.
func live(t *api.Task) bool {
	return t != nil && t.DesiredState == api.TaskRunning && !t.Status.State.Terminal() && t.NodeID != ""
}

func inNetwork(t *api.Task) bool { return live(t) && len(t.Networks) > 0 }

// netView is the network state of the whole cluster, from which each
// node's is cut: built once per relevant change, shared by every answer.
type netView struct {
	ingress *api.Network
	// networks in ID order; peers per network, tasks in ID order; ingress
	// peers (every node's ingress address), nodes in ID order.
	networks    []*api.Network
	peers       map[string][]api.NetworkPeer
	nodePeers   []api.NetworkPeer
	backends    map[string][]api.NetworkAttachment
	services    []*api.Service
	published   []api.PublishedPort
	mu          sync.Mutex
	byJoinedSet map[string]sharedState
}

type sharedState struct {
	st  api.NetworkState
	sum string
}

func sortedKeys[T any](m map[string]T) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func (h *hub) buildNet() *netView {
	v := &netView{peers: map[string][]api.NetworkPeer{}, backends: map[string][]api.NetworkAttachment{}, byJoinedSet: map[string]sharedState{}}
	for _, id := range sortedKeys(h.networks) {
		n := h.networks[id]
		v.networks = append(v.networks, n)
		if n.Spec.Ingress && v.ingress == nil {
			v.ingress = n
		}
	}
	nodeIDs := sortedKeys(h.nodes)
	if v.ingress != nil {
		for _, id := range nodeIDs {
			n := h.nodes[id]
			if n.IngressAddr == "" {
				continue
			}
			p, err := netip.ParsePrefix(n.IngressAddr)
			if err != nil {
				continue
			}
			v.nodePeers = append(v.nodePeers, api.NetworkPeer{
				NetworkAttachment: api.NetworkAttachment{NetworkID: v.ingress.ID, Addr: n.IngressAddr, MAC: api.MACFromIP(p.Addr())},
				NodeID:            n.ID, NodeAddr: n.Status.Addr,
			})
		}
	}
	var attached []*api.Task
	for _, t := range h.tasks {
		if inNetwork(t) {
			attached = append(attached, t)
		}
	}
	slices.SortFunc(attached, func(a, b *api.Task) int { return strings.Compare(a.ID, b.ID) })
	for _, t := range attached {
		nodeAddr := ""
		if n := h.nodes[t.NodeID]; n != nil {
			nodeAddr = n.Status.Addr
		}
		for _, a := range t.Networks {
			v.peers[a.NetworkID] = append(v.peers[a.NetworkID], api.NetworkPeer{NetworkAttachment: a, TaskID: t.ID, NodeAddr: nodeAddr})
			if t.Status.State == api.TaskRunning {
				v.backends[t.ServiceID] = append(v.backends[t.ServiceID], a)
			}
		}
	}
	for _, id := range sortedKeys(h.services) {
		svc := h.services[id]
		v.services = append(v.services, svc)
		if v.ingress == nil {
			continue
		}
		var addrs []string
		for _, a := range v.backends[svc.ID] {
			if a.NetworkID == v.ingress.ID {
				addrs = append(addrs, a.Addr)
			}
		}
		for _, p := range svc.Spec.Endpoint.IngressPorts() {
			v.published = append(v.published, api.PublishedPort{PortConfig: p, Backends: addrs})
		}
	}
	return v
}

// networkOf is what node nodeID needs for the networks its tasks join and,
// once it has an ingress address, for the routing mesh: the ingress
// network, every node's ingress address as a peer and the published ports
// with their backends.
func (h *hub) networkOf(nodeID string, nt *nodeTasks) (api.NetworkState, string) {
	v := h.net
	joined := map[string]bool{}
	if nt != nil {
		for _, s := range nt.tasks {
			if live(s.task) {
				for _, a := range s.task.Networks {
					joined[a.NetworkID] = true
				}
			}
		}
	}
	ingressAddr := ""
	if self := h.nodes[nodeID]; self != nil && self.IngressAddr != "" && v.ingress != nil {
		joined[v.ingress.ID] = true
		ingressAddr = self.IngressAddr
	}
	if len(joined) == 0 {
		return api.NetworkState{}, sum(api.NetworkState{})
	}
	key := strings.Join(sortedKeys(joined), ",")
	if ingressAddr != "" {
		key += "|mesh"
	}
	v.mu.Lock()
	shared, ok := v.byJoinedSet[key]
	if !ok {
		shared.st = v.cut(joined, ingressAddr != "")
		shared.sum = sum(shared.st)
		v.byJoinedSet[key] = shared
	}
	v.mu.Unlock()
	st := shared.st
	st.IngressAddr = ingressAddr
	if ingressAddr == "" {
		return st, shared.sum
	}
	return st, sumString(shared.sum + ingressAddr)
}

// same reports whether w holds what v does, so that no node's network
// state differs between them. v may be nil.
func (v *netView) same(w *netView) bool {
	if v == nil || w == nil {
		return v == w
	}
	return reflect.DeepEqual(v.ingress, w.ingress) && reflect.DeepEqual(v.networks, w.networks) &&
		reflect.DeepEqual(v.peers, w.peers) && reflect.DeepEqual(v.nodePeers, w.nodePeers) &&
		reflect.DeepEqual(v.backends, w.backends) && reflect.DeepEqual(v.services, w.services) &&
		reflect.DeepEqual(v.published, w.published)
}

// cut is the state shared by the nodes that join the networks in joined.
func (v *netView) cut(joined map[string]bool, mesh bool) api.NetworkState {
	var st api.NetworkState
	for _, n := range v.networks {
		if joined[n.ID] {
			st.Networks = append(st.Networks, n)
		}
	}
	if mesh {
		st.Peers = append(st.Peers, v.nodePeers...)
		st.Published = v.published
	}
	for _, n := range v.networks {
		if joined[n.ID] {
			st.Peers = append(st.Peers, v.peers[n.ID]...)
		}
	}
	for _, svc := range v.services {
		on := false
		for _, id := range svc.Spec.Networks {
			on = on || joined[id]
		}
		if !on {
			continue
		}
		mode := svc.Spec.Endpoint.Mode
		if mode == "" {
			mode = api.EndpointVIP
		}
		st.Services = append(st.Services, api.ServiceNetwork{
			Name: svc.Spec.Name, Aliases: svc.Spec.Aliases, Mode: mode, VIPs: svc.Endpoint.VIPs, Backends: v.backends[svc.ID],
		})
	}
	return st
}

// sum identifies a network state; the view's ordered lists make it stable.
func sum(st api.NetworkState) string {
	b, _ := json.Marshal(st)
	return sumBytes(b)
}

func sumString(s string) string { return sumBytes([]byte(s)) }

func sumBytes(b []byte) string {
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:8])
}
