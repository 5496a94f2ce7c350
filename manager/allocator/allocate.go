package allocator

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/shoal-dev/shoal/api"
)

// Index answers which networks the tasks of a service attach to.
type Index struct {
	networks  map[string]*api.Network
	services  map[string]*api.Service
	ingressID string
}

// NewIndex indexes the networks and services of one snapshot.
func NewIndex(networks []*api.Network, services []*api.Service) *Index {
	x := &Index{
		networks: make(map[string]*api.Network, len(networks)),
		services: make(map[string]*api.Service, len(services)),
	}
	for _, n := range networks {
		x.networks[n.ID] = n
		if n.Spec.Ingress && (x.ingressID == "" || n.ID < x.ingressID) {
			x.ingressID = n.ID
		}
	}
	for _, s := range services {
		x.services[s.ID] = s
	}
	return x
}

// IngressID is the ID of the ingress network, "" when there is none.
func (x *Index) IngressID() string { return x.ingressID }

// Needs returns the IDs of the networks the tasks of svc attach to: the
// ingress network first when the service publishes ports, then the
// service's networks, without repeats. ok is false when the service
// publishes ports and there is no ingress network to carry them.
func (x *Index) Needs(svc *api.Service) (ids []string, ok bool) {
	ok = true
	if len(svc.Spec.Endpoint.IngressPorts()) > 0 {
		if x.ingressID == "" {
			ok = false
		} else {
			ids = append(ids, x.ingressID)
		}
	}
	for _, id := range svc.Spec.Networks {
		if !slices.Contains(ids, id) {
			ids = append(ids, id)
		}
	}
	return ids, ok
}

// Ready reports whether t's network attachments are exactly the ones its
// service needs, so the task may be scheduled. A task whose service is gone
// needs nothing.
func (x *Index) Ready(t *api.Task) bool {
	svc := x.services[t.ServiceID]
	if svc == nil {
		return true
	}
	needs, ok := x.Needs(svc)
	if !ok || len(needs) != len(t.Networks) {
		return false
	}
	for i, id := range needs {
		if t.Networks[i].NetworkID != id || t.Networks[i].Addr == "" {
			return false
		}
	}
	return true
}

// Plan is what one allocation pass wants written.
type Plan struct {
	// Services are changed copies with new Endpoint VIPs (Meta.Version as read).
	Services []*api.Service
	// Tasks are changed copies of pending tasks with new Networks (Meta.Version as read).
	Tasks []*api.Task
	// Nodes are changed copies of nodes with a new IngressAddr (Meta.Version as read).
	Nodes []*api.Node
	// Failures are the services and tasks that could not get all their addresses.
	Failures []Failure
}

// Empty reports whether the plan writes nothing.
func (p Plan) Empty() bool { return len(p.Services) == 0 && len(p.Tasks) == 0 && len(p.Nodes) == 0 }

// Failure is a service, task or node left without an address it needs.
type Failure struct {
	ServiceID string
	// TaskID is empty for a service's virtual IP.
	TaskID string
	// NodeID is set, alone, for a node's ingress address.
	NodeID string
	Err    error
}

// HoldsAddresses reports whether a task's attachments are in use: the task
// has not finished, and it has been scheduled or still may be.
func HoldsAddresses(t *api.Task) bool {
	if t.Status.State.Terminal() {
		return false
	}
	return t.Status.State.Before(api.TaskAssigned) && t.DesiredState == api.TaskRunning ||
		!t.Status.State.Before(api.TaskAssigned)
}

// allocatable reports whether the allocator may (re)write t's attachments:
// it has not been scheduled yet and should run.
func allocatable(t *api.Task) bool {
	return t.Status.State.Before(api.TaskAssigned) && t.DesiredState == api.TaskRunning
}

// Allocate computes the virtual IPs of every service, the attachments of
// every task not scheduled yet and the ingress address of every node, from
// the state alone: the addresses in use are those of tasks that hold them
// (HoldsAddresses), of services' VIPs and of nodes, so addresses of finished
// or deleted tasks, of removed services and of removed nodes are free again.
// Existing valid allocations are kept; new ones take the lowest free address
// of the subnet after the gateway. A node gets an ingress address once it is
// ready and keeps it while it exists; none while there is no ingress
// network. Services, tasks and nodes are visited in ID order, so the plan
// depends on the state only. Allocate does not change its arguments.
func Allocate(networks []*api.Network, services []*api.Service, tasks []*api.Task, nodes []*api.Node) Plan {
	idx := NewIndex(networks, services)
	pools := make(map[string]*pool, len(networks))
	for _, n := range networks {
		if p, err := netip.ParsePrefix(n.Spec.Subnet); err == nil && p.Addr().Is4() && p.Bits() <= MaxSubnetBits {
			pools[n.ID] = newPool(n, p.Masked())
		}
	}
	services = sortedByID(services, func(s *api.Service) string { return s.ID })
	tasks = sortedByID(tasks, func(t *api.Task) string { return t.ID })

	// Addresses held by tasks the allocator no longer touches come first.
	var pending []*api.Task
	for _, t := range tasks {
		switch {
		case !HoldsAddresses(t):
		case allocatable(t) && idx.services[t.ServiceID] != nil:
			pending = append(pending, t)
		default:
			for _, a := range t.Networks {
				if p := pools[a.NetworkID]; p != nil {
					if addr, ok := p.parse(a.Addr); ok {
						p.used[addr] = true
					}
				}
			}
		}
	}

	// Then the nodes' ingress addresses that stay.
	nodes = sortedByID(nodes, func(n *api.Node) string { return n.ID })
	ingress := pools[idx.IngressID()]
	nodeKept := make([]netip.Addr, len(nodes))
	if ingress != nil {
		for i, n := range nodes {
			if addr, ok := ingress.parse(n.IngressAddr); ok && !ingress.used[addr] {
				ingress.used[addr] = true
				nodeKept[i] = addr
			}
		}
	}

	// Then the VIPs and pending attachments that stay.
	type want struct {
		needs []string
		kept  map[string]netip.Addr // network ID -> address kept
	}
	keep := func(needs []string, have []string, addrs []string) map[string]netip.Addr {
		kept := make(map[string]netip.Addr)
		for i, id := range have {
			p := pools[id]
			if p == nil || !slices.Contains(needs, id) {
				continue
			}
			if _, dup := kept[id]; dup {
				continue
			}
			if addr, ok := p.parse(addrs[i]); ok && !p.used[addr] {
				p.used[addr] = true
				kept[id] = addr
			}
		}
		return kept
	}
	svcWant := make([]want, len(services))
	for i, svc := range services {
		var needs []string
		if svc.Spec.Endpoint.Mode != api.EndpointDNSRR {
			needs, _ = idx.Needs(svc)
		}
		var have, addrs []string
		for _, v := range svc.Endpoint.VIPs {
			have, addrs = append(have, v.NetworkID), append(addrs, v.Addr)
		}
		svcWant[i] = want{needs: needs, kept: keep(needs, have, addrs)}
	}
	taskWant := make([]want, len(pending))
	taskOK := make([]bool, len(pending))
	for i, t := range pending {
		needs, ok := idx.Needs(idx.services[t.ServiceID])
		var have, addrs []string
		for _, a := range t.Networks {
			have, addrs = append(have, a.NetworkID), append(addrs, a.Addr)
		}
		taskWant[i] = want{needs: needs, kept: keep(needs, have, addrs)}
		taskOK[i] = ok
	}

	var plan Plan
	// assign fills w from the pools, all or nothing, and returns the
	// addresses in needs order.
	assign := func(w want) ([]netip.Prefix, error) {
		out := make([]netip.Prefix, 0, len(w.needs))
		var taken []netip.Addr
		for _, id := range w.needs {
			p := pools[id]
			if p == nil {
				rollback(pools, w.needs, taken)
				return nil, fmt.Errorf("network %s: not found or without a subnet", id)
			}
			addr, ok := w.kept[id]
			if !ok {
				if addr, ok = p.take(); !ok {
					rollback(pools, w.needs, taken)
					return nil, fmt.Errorf("network %s (%s): %w", p.name, p.prefix, ErrNoAddress)
				}
				taken = append(taken, addr)
			}
			out = append(out, netip.PrefixFrom(addr, p.prefix.Bits()))
		}
		return out, nil
	}

	for i, svc := range services {
		addrs, err := assign(svcWant[i])
		if err != nil {
			plan.Failures = append(plan.Failures, Failure{ServiceID: svc.ID, Err: fmt.Errorf("virtual IP: %w", err)})
			continue
		}
		var vips []api.VIP
		for j, id := range svcWant[i].needs {
			vips = append(vips, api.VIP{NetworkID: id, Addr: addrs[j].String()})
		}
		if !slices.Equal(vips, svc.Endpoint.VIPs) {
			c := *svc
			c.Endpoint.VIPs = vips
			plan.Services = append(plan.Services, &c)
		}
	}
	for i, t := range pending {
		if !taskOK[i] {
			plan.Failures = append(plan.Failures, Failure{ServiceID: t.ServiceID, TaskID: t.ID,
				Err: fmt.Errorf("the service publishes ports and there is no ingress network")})
			continue
		}
		addrs, err := assign(taskWant[i])
		if err != nil {
			plan.Failures = append(plan.Failures, Failure{ServiceID: t.ServiceID, TaskID: t.ID, Err: err})
			continue
		}
		var atts []api.NetworkAttachment
		for j, id := range taskWant[i].needs {
			atts = append(atts, api.NetworkAttachment{NetworkID: id, Addr: addrs[j].String(), MAC: api.MACFromIP(addrs[j].Addr())})
		}
		if !slices.Equal(atts, t.Networks) {
			c := *t
			c.Networks = atts
			plan.Tasks = append(plan.Tasks, &c)
		}
	}
	for i, n := range nodes {
		var want string
		switch {
		case ingress == nil:
		case nodeKept[i].IsValid():
			want = netip.PrefixFrom(nodeKept[i], ingress.prefix.Bits()).String()
		case n.Status.State == api.NodeStateReady:
			addr, ok := ingress.take()
			if !ok {
				plan.Failures = append(plan.Failures, Failure{NodeID: n.ID,
					Err: fmt.Errorf("ingress address: network %s (%s): %w", ingress.name, ingress.prefix, ErrNoAddress)})
				continue
			}
			want = netip.PrefixFrom(addr, ingress.prefix.Bits()).String()
		}
		if want != n.IngressAddr {
			c := *n
			c.IngressAddr = want
			plan.Nodes = append(plan.Nodes, &c)
		}
	}
	return plan
}

func rollback(pools map[string]*pool, needs []string, taken []netip.Addr) {
	for _, addr := range taken {
		for _, id := range needs {
			if p := pools[id]; p != nil && p.prefix.Contains(addr) {
				p.free(addr)
			}
		}
	}
}

func sortedByID[T any](in []*T, id func(*T) string) []*T {
	out := slices.Clone(in)
	slices.SortFunc(out, func(a, b *T) int { return strings.Compare(id(a), id(b)) })
	return out
}

// pool is the addresses of one network: network+2 (after the gateway) up
// to the broadcast address, exclusive.
type pool struct {
	name        string
	prefix      netip.Prefix
	first, last netip.Addr
	used        map[netip.Addr]bool
	// cursor: no address below it is free (addresses are only taken
	// within a pass, except by rollback, which moves it back).
	cursor netip.Addr
}

func newPool(n *api.Network, prefix netip.Prefix) *pool {
	first := prefix.Addr().Next().Next()
	return &pool{
		name:   n.Spec.Name,
		prefix: prefix,
		first:  first,
		last:   lastAddr(prefix).Prev(),
		used:   make(map[netip.Addr]bool),
		cursor: first,
	}
}

// parse reads an allocated CIDR of this network and reports whether it is a
// task address of it.
func (p *pool) parse(cidr string) (netip.Addr, bool) {
	pf, err := netip.ParsePrefix(cidr)
	if err != nil || pf.Bits() != p.prefix.Bits() {
		return netip.Addr{}, false
	}
	a := pf.Addr()
	return a, p.prefix.Contains(a) && !a.Less(p.first) && !p.last.Less(a)
}

// take returns the lowest free address and marks it used.
func (p *pool) take() (netip.Addr, bool) {
	for a := p.cursor; a.IsValid() && !p.last.Less(a); a = a.Next() {
		if !p.used[a] {
			p.used[a] = true
			p.cursor = a.Next()
			return a, true
		}
	}
	p.cursor = p.last.Next()
	return netip.Addr{}, false
}

func (p *pool) free(a netip.Addr) {
	delete(p.used, a)
	if a.Less(p.cursor) {
		p.cursor = a
	}
}
