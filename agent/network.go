package agent

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"

	"github.com/shoal-dev/shoal/api"
	"github.com/shoal-dev/shoal/overlay"
	"github.com/shoal-dev/shoal/overlay/dns"
	"github.com/shoal-dev/shoal/overlay/lb"
)

// Networker wires the overlay networks of this node's tasks.
type Networker interface {
	// Prepare makes t's network namespace ready before its container is
	// created; tasks without networks get "" (a namespace of their own).
	Prepare(t *api.Task) (netnsPath, resolvConf string, err error)
	// Update brings every task's networking in line with the node's
	// assignments and the cluster's network state.
	Update(tasks []*api.Task, st api.NetworkState)
}

// Network is the real Networker: the overlay data plane, an embedded DNS
// resolver in each task namespace, nftables load balancing of VIPs, and a
// gateway bridge through which tasks reach the outside, masqueraded.
type Network struct {
	plane     *overlay.Plane
	table     *dns.Table
	upstreams []string
	dir       string // resolv.conf files
	// netnsPrefix starts the names of this node's task namespaces.
	netnsPrefix string
	// own are this node's own ports (API, raft, gossip, metrics, VXLAN):
	// never DNATed, whatever the assignments say.
	own map[uint16]string
	log *slog.Logger

	mu        sync.Mutex
	tasks     []*api.Task
	state     api.NetworkState
	prepared  map[string]*api.Task // created here, maybe not yet in the assignments
	assigned  map[string]bool      // prepared tasks seen in the assignments since
	resolvers map[string]*dns.Resolver
	rules     map[string]string // task ID -> the LB rules last applied, as text
	mesh      map[string]string // task ID -> the mesh reply rules last applied, as text
	// hostRefused are the own ports last left out of the host-port table.
	hostRefused string
	refused     string // own ports last left out of the ingress table
	// gateway is whether the masquerade of the gateway subnet was last
	// applied (true) or removed; gatewaySet is false until the first time.
	gateway    bool
	gatewaySet bool
}

// NewNetwork returns the data plane of node nodeID whose underlay address is
// vtep and which serves on endpoints.
func NewNetwork(nodeID string, vtep netip.Addr, endpoints api.Endpoints, dir string, log *slog.Logger) (*Network, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("network state dir: %w", err)
	}
	log = log.With("component", "network")
	own := api.OwnPorts(endpoints)
	// Until the first assignments, the ingress table is what an earlier
	// agent left; drop it if it could cut this node off from the managers.
	if dropped, reason, err := lb.DropStaleIngress("", own); err != nil {
		log.Warn("check the ingress table left by an earlier agent", "err", err)
	} else if dropped {
		log.Info("dropped a stale ingress table", "table", lb.IngressTable, "reason", reason)
	}
	return &Network{
		plane:       overlay.New(overlay.Config{VTEP: vtep, Logger: log}, overlay.RealNetlink()),
		table:       dns.NewTable(),
		upstreams:   dns.HostUpstreams("/etc/resolv.conf"),
		dir:         dir,
		netnsPrefix: "shoal-" + nodeID[:min(8, len(nodeID))] + "-",
		own:         own,
		log:         log,
		prepared:    map[string]*api.Task{},
		assigned:    map[string]bool{},
		resolvers:   map[string]*dns.Resolver{},
		rules:       map[string]string{},
		mesh:        map[string]string{},
	}, nil
}

// netnsName names a task's namespace with this node's prefix, so agents
// sharing a /run/netns (test hosts on one machine) leave each other's alone.
func (n *Network) netnsName(taskID string) string {
	return n.netnsPrefix + taskID[:min(12, len(taskID))]
}

// upstreamsOf are the nameservers a task's resolver forwards other names
// to: its own (--dns) or the node's.
func (n *Network) upstreamsOf(t *api.Task) []string {
	if d := t.Spec.DNS; d != nil && len(d.Nameservers) > 0 {
		return d.Nameservers
	}
	return n.upstreams
}

func (n *Network) resolvConf(taskID string) string {
	return filepath.Join(n.dir, taskID+".resolv.conf")
}

// Prepare creates the task's namespace, its resolv.conf and its links.
// Wiring that fails is logged and retried on the next update: the task
// starts either way, like a container whose network comes up late.
func (n *Network) Prepare(t *api.Task) (string, string, error) {
	if !needsNetns(t) {
		return "", "", nil
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	// Under the lock, so no concurrent apply removes it as unknown.
	path, err := overlay.NewTaskNetns(n.netnsName(t.ID))
	if err != nil {
		return "", "", err
	}
	conf := n.resolvConf(t.ID)
	var search, options []string
	if d := t.Spec.DNS; d != nil {
		search, options = d.Search, d.Options
	}
	if err := dns.WriteTaskResolvConf(conf, search, options); err != nil {
		return "", "", err
	}
	n.prepared[t.ID] = t
	if err := n.applyLocked(); err != nil {
		n.log.Warn("wire task network; will retry", "task", t.ID, "err", err)
	}
	return path, conf, nil
}

// Update applies the latest assignments.
func (n *Network) Update(tasks []*api.Task, st api.NetworkState) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.tasks, n.state = tasks, st
	if err := n.applyLocked(); err != nil {
		n.log.Warn("network update", "err", err)
	}
}

// local returns the tasks whose networking must exist now: unfinished tasks with
// networks whose namespace exists (made here or by an earlier agent).
func (n *Network) localLocked() []*api.Task {
	byID := map[string]*api.Task{}
	current := make(map[string]bool, len(n.tasks))
	for _, t := range n.tasks {
		current[t.ID] = true
		if _, ok := n.prepared[t.ID]; ok {
			n.assigned[t.ID] = true
		}
		if !needsNetns(t) {
			continue
		}
		// A task wanted stopped keeps its namespace until its container
		// ends: it still answers while the load balancers drain it.
		if t.Status.State.Terminal() {
			delete(n.prepared, t.ID)
			continue
		}
		if _, err := os.Stat(overlay.NetnsPath(n.netnsName(t.ID))); err == nil {
			byID[t.ID] = t
		}
	}
	for id, t := range n.prepared {
		// Once in the assignments, a task gone from them is finished here
		// even if its terminal state was never seen (removed services'
		// tasks are deleted): keeping it would keep its namespace forever.
		if !current[id] && n.assigned[id] {
			delete(n.prepared, id)
			delete(n.assigned, id)
			continue
		}
		if _, ok := byID[id]; !ok {
			byID[id] = t
		}
	}
	for id := range n.assigned {
		if _, ok := n.prepared[id]; !ok {
			delete(n.assigned, id)
		}
	}
	out := make([]*api.Task, 0, len(byID))
	for _, t := range byID {
		out = append(out, t)
	}
	slices.SortFunc(out, func(a, b *api.Task) int { return cmpString(a.ID, b.ID) })
	return out
}

func cmpString(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func (n *Network) applyLocked() error {
	local := n.localLocked()
	var errs []error
	d, err := n.desired(local, n.state)
	if err != nil {
		errs = append(errs, err)
	}
	d.Gateway = true
	if err := n.plane.Reconcile(d); err != nil {
		errs = append(errs, err)
	}
	if err := n.applyGatewayLocked(len(d.Endpoints) > 0 || len(d.GatewayOnly) > 0); err != nil {
		errs = append(errs, err)
	}
	if err := n.applyHostPortsLocked(local); err != nil {
		errs = append(errs, err)
	}
	n.table.Set(records(n.state))
	if err := n.applyIngressLocked(); err != nil {
		errs = append(errs, err)
	}

	keep := map[string]bool{}
	for _, t := range local {
		keep[t.ID] = true
		path := overlay.NetnsPath(n.netnsName(t.ID))
		networks := make([]string, len(t.Networks))
		for i, a := range t.Networks {
			networks[i] = a.NetworkID
		}
		if r, ok := n.resolvers[t.ID]; ok {
			r.SetNetworks(networks)
		} else if r, err := dns.Start(path, networks, n.table, n.upstreamsOf(t), n.log); err != nil {
			errs = append(errs, fmt.Errorf("dns for task %s: %w", t.ID, err))
		} else {
			n.resolvers[t.ID] = r
		}
		if err := n.applyMeshReplyLocked(t, path); err != nil {
			errs = append(errs, fmt.Errorf("routing mesh replies for task %s: %w", t.ID, err))
		}
		vips := taskVIPs(t, n.state)
		text := fmt.Sprint(vips)
		if n.rules[t.ID] != text {
			if err := lb.ApplyTaskRules(path, vips); err != nil {
				errs = append(errs, fmt.Errorf("load balancing for task %s: %w", t.ID, err))
			} else {
				n.rules[t.ID] = text
			}
		}
	}
	// Tear down what finished tasks left.
	for id, r := range n.resolvers {
		if !keep[id] {
			_ = r.Close()
			delete(n.resolvers, id)
		}
	}
	for id := range n.rules {
		if !keep[id] {
			delete(n.rules, id)
		}
	}
	for id := range n.mesh {
		if !keep[id] {
			delete(n.mesh, id)
		}
	}
	entries, _ := os.ReadDir(overlay.NetnsDir)
	for _, e := range entries {
		name := e.Name()
		if !strings.HasPrefix(name, n.netnsPrefix) || n.keepsName(keep, name) {
			continue
		}
		if err := overlay.DeleteTaskNetns(name); err != nil {
			errs = append(errs, err)
		}
	}
	files, _ := os.ReadDir(n.dir)
	for _, f := range files {
		id, ok := cutSuffix(f.Name(), ".resolv.conf")
		if ok && !keep[id] {
			_ = os.Remove(filepath.Join(n.dir, f.Name()))
		}
	}
	return errors.Join(errs...)
}

// applyIngressLocked publishes the ports of the routing mesh in the host
// namespace: DNAT to the backends' ingress addresses, masqueraded into the
// ingress subnet, which the host reaches through its address on the bridge.
// The table is derived from the cluster state alone, on every reconcile:
// the kernel's copy is compared (by digest) and replaced when it differs.
func (n *Network) applyIngressLocked() error {
	ports, subnet, ingressID, refused := ingressPorts(n.state, n.own)
	// The managers refuse these; an older manager or a node started on a
	// port a service already publishes may still send one.
	if text := strings.Join(refused, ", "); text != n.refused {
		if text != "" {
			n.log.Warn("not publishing ports this node uses itself", "ports", text)
		}
		n.refused = text
	}
	if len(ports) > 0 {
		// Forward what prerouting DNATs onto the overlay; let 127.0.0.1 reach the
		// ports as Docker does on its ingress bridge.
		if err := writeSysctl("/proc/sys/net/ipv4/ip_forward", "1"); err != nil {
			return err
		}
		vni := uint32(0)
		for _, nw := range n.state.Networks {
			if nw.ID == ingressID {
				vni = nw.VNI
			}
		}
		if err := writeSysctl(filepath.Join("/proc/sys/net/ipv4/conf", n.plane.BridgeName(vni), "route_localnet"), "1"); err != nil {
			n.log.Debug("route_localnet on the ingress bridge", "err", err)
		}
	}
	changed, err := lb.SyncIngress("", ports, subnet)
	if err != nil {
		return fmt.Errorf("published ports: %w", err)
	}
	if changed {
		n.log.Debug("ingress table replaced", "ports", len(ports))
	}
	return nil
}

// applyGatewayLocked masquerades what tasks send out through the gateway
// bridge while any local task has one (need), and removes the rule after.
func (n *Network) applyGatewayLocked(need bool) error {
	if n.gatewaySet && n.gateway == need {
		return nil
	}
	if need {
		if err := writeSysctl("/proc/sys/net/ipv4/ip_forward", "1"); err != nil {
			return err
		}
		if err := lb.ApplyGateway("", overlay.GatewayPrefix(), n.plane.GatewayBridge()); err != nil {
			return fmt.Errorf("gateway masquerade: %w", err)
		}
	} else if err := lb.RemoveGateway(""); err != nil {
		return fmt.Errorf("gateway masquerade: %w", err)
	}
	n.gateway, n.gatewaySet = need, true
	return nil
}

func writeSysctl(path, value string) error {
	if b, err := os.ReadFile(path); err == nil && string(b) == value+"\n" {
		return nil
	}
	if err := os.WriteFile(path, []byte(value), 0o644); err != nil {
		return fmt.Errorf("sysctl %s: %w", path, err)
	}
	return nil
}

// ingressPorts turns the published ports into rules for the host namespace,
// with the ingress subnet and the ingress network's ID; none while this node
// has no ingress address. Ports in own are left out and listed in refused.
func ingressPorts(st api.NetworkState, own map[uint16]string) (_ []lb.PublishedPort, _ netip.Prefix, _ string, refused []string) {
	var subnet netip.Prefix
	var id string
	for _, nw := range st.Networks {
		if nw.Spec.Ingress {
			subnet, _ = netip.ParsePrefix(nw.Spec.Subnet)
			id = nw.ID
			break
		}
	}
	if st.IngressAddr == "" || !subnet.IsValid() {
		return nil, netip.Prefix{}, "", nil
	}
	var out []lb.PublishedPort
	for _, p := range st.Published {
		if what, ok := own[p.Published]; ok {
			refused = append(refused, fmt.Sprintf("%s: %s", p.PortConfig, what))
			continue
		}
		lp := lb.PublishedPort{Protocol: p.Protocol, Published: p.Published, Target: p.Target}
		if p.PublishedIP != "" {
			if lp.Addr, _ = netip.ParseAddr(p.PublishedIP); !lp.Addr.Is4() {
				continue // the managers refuse such an address
			}
		}
		for _, b := range p.Backends {
			if a, err := netip.ParsePrefix(b); err == nil {
				lp.Backends = append(lp.Backends, a.Addr())
			}
		}
		out = append(out, lp)
	}
	if len(out) == 0 {
		return nil, netip.Prefix{}, "", refused
	}
	return out, subnet, id, refused
}

func (n *Network) keepsName(keep map[string]bool, name string) bool {
	for id := range keep {
		if n.netnsName(id) == name {
			return true
		}
	}
	return false
}

func cutSuffix(s, suffix string) (string, bool) {
	if len(s) < len(suffix) || s[len(s)-len(suffix):] != suffix {
		return s, false
	}
	return s[:len(s)-len(suffix)], true
}

// desired turns the assignments into the overlay's desired state.
func (n *Network) desired(local []*api.Task, st api.NetworkState) (overlay.Desired, error) {
	var d overlay.Desired
	var errs []error
	for _, nw := range st.Networks {
		subnet, err := netip.ParsePrefix(nw.Spec.Subnet)
		if err != nil {
			errs = append(errs, fmt.Errorf("network %s subnet %q: %w", nw.ID, nw.Spec.Subnet, err))
			continue
		}
		gw, _ := netip.ParseAddr(nw.Gateway)
		on := overlay.Network{ID: nw.ID, VNI: nw.VNI, Subnet: subnet, Gateway: gw}
		if nw.Spec.Ingress && st.IngressAddr != "" {
			if on.HostAddr, err = netip.ParsePrefix(st.IngressAddr); err != nil {
				errs = append(errs, fmt.Errorf("ingress address %q: %w", st.IngressAddr, err))
			}
		}
		d.Networks = append(d.Networks, on)
	}
	for _, t := range local {
		if len(t.Networks) == 0 {
			d.GatewayOnly = append(d.GatewayOnly, overlay.GatewayTask{TaskID: t.ID, Netns: overlay.NetnsPath(n.netnsName(t.ID))})
		}
		for i, a := range t.Networks {
			addr, err := netip.ParsePrefix(a.Addr)
			if err != nil {
				errs = append(errs, fmt.Errorf("task %s address %q: %w", t.ID, a.Addr, err))
				continue
			}
			mac, _ := net.ParseMAC(a.MAC)
			d.Endpoints = append(d.Endpoints, overlay.Endpoint{
				TaskID: t.ID, NetworkID: a.NetworkID, Addr: addr, MAC: mac,
				Netns: overlay.NetnsPath(n.netnsName(t.ID)), Ifname: fmt.Sprintf("eth%d", i),
			})
		}
	}
	for _, p := range st.Peers {
		addr, err := netip.ParsePrefix(p.Addr)
		if err != nil {
			continue
		}
		vtep, err := netip.ParseAddr(p.NodeAddr)
		if err != nil {
			continue
		}
		mac, _ := net.ParseMAC(p.MAC)
		d.Peers = append(d.Peers, overlay.Peer{NetworkID: p.NetworkID, Addr: addr.Addr(), MAC: mac, VTEP: vtep})
	}
	return d, errors.Join(errs...)
}

// records turns the services into the resolver's table: per network, the
// VIP (vip mode) and the running tasks' addresses.
func records(st api.NetworkState) []dns.Record {
	var out []dns.Record
	for _, svc := range st.Services {
		byNet := map[string]*dns.Record{}
		get := func(id string) *dns.Record {
			r, ok := byNet[id]
			if !ok {
				r = &dns.Record{Network: id, Service: svc.Name}
				byNet[id] = r
			}
			return r
		}
		if svc.Mode != api.EndpointDNSRR {
			for _, v := range svc.VIPs {
				if p, err := netip.ParsePrefix(v.Addr); err == nil {
					get(v.NetworkID).VIP = p.Addr()
				}
			}
		}
		for _, b := range svc.Backends {
			if p, err := netip.ParsePrefix(b.Addr); err == nil {
				r := get(b.NetworkID)
				r.Tasks = append(r.Tasks, p.Addr())
			}
		}
		ids := make([]string, 0, len(byNet))
		for id := range byNet {
			ids = append(ids, id)
		}
		slices.Sort(ids)
		for _, id := range ids {
			out = append(out, *byNet[id])
			for _, alias := range svc.Aliases {
				r := *byNet[id]
				r.Service = alias
				out = append(out, r)
			}
		}
	}
	return out
}

// taskVIPs are the VIPs a task can reach, each with its running backends on
// the same network.
func taskVIPs(t *api.Task, st api.NetworkState) []lb.VIP {
	on := map[string]bool{}
	for _, a := range t.Networks {
		on[a.NetworkID] = true
	}
	var out []lb.VIP
	for _, svc := range st.Services {
		if svc.Mode == api.EndpointDNSRR {
			continue
		}
		for _, v := range svc.VIPs {
			if !on[v.NetworkID] {
				continue
			}
			vip, err := netip.ParsePrefix(v.Addr)
			if err != nil {
				continue
			}
			l := lb.VIP{Addr: vip.Addr()}
			for _, b := range svc.Backends {
				if p, err := netip.ParsePrefix(b.Addr); err == nil && b.NetworkID == v.NetworkID {
					l.Backends = append(l.Backends, p.Addr())
				}
			}
			out = append(out, l)
		}
	}
	return out
}
