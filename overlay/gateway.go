package overlay

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
)

const (
	// GatewaySubnet is the subnet of the node's gateway bridge (Docker's docker_gwbridge uses
	// the same): the bridge has its first address, each task namespace with an endpoint one
	// more, given out by the Plane from what it finds in the kernel. It never leaves the node:
	// the caller masquerades what comes from it (see lb.ApplyGateway).
	GatewaySubnet = "172.18.0.0/16"
	// GatewayIfname is the name of a task's link to the gateway bridge, its last interface.
	GatewayIfname = "gw0"

	kindGateway  = 'g' // the gateway bridge ("w0") and the host ends of its veths (a hash)
	gwBridgeRest = "w0"
)

// ErrGatewayExhausted is returned by Reconcile when GatewaySubnet has no free address.
var ErrGatewayExhausted = errors.New("overlay: gateway subnet exhausted")

// GatewayPrefix is GatewaySubnet.
func GatewayPrefix() netip.Prefix { return netip.MustParsePrefix(GatewaySubnet) }

// GatewayAddr is the gateway bridge's address, the tasks' default gateway: the first
// address of GatewaySubnet, with its length.
func GatewayAddr() netip.Prefix {
	s := GatewayPrefix()
	return netip.PrefixFrom(s.Addr().Next(), s.Bits())
}

// GatewayBridge is the name of the node's gateway bridge ("shgw0" with the default prefix).
func (p *Plane) GatewayBridge() string { return p.name(kindGateway, gwBridgeRest) }

// GatewayVethName is the name of the host end of a task's veth to the gateway bridge.
func (p *Plane) GatewayVethName(taskID string) string {
	return p.name(kindGateway, p.vethHash(taskID, ""))
}

// gwPlan is one task namespace that gets a gateway link.
type gwPlan struct {
	taskID string
	netns  string
	veth   string
	peer   string
}

// planGateway lists the task namespaces with a valid endpoint, and those in only, one per
// task, by task ID.
func (p *Plane) planGateway(plans []*netPlan, only []GatewayTask) []gwPlan {
	byTask := map[string]gwPlan{}
	add := func(taskID, netns string) {
		if _, ok := byTask[taskID]; ok {
			return
		}
		h := p.vethHash(taskID, "") // "" is no network's ID: no clash with endpoints
		byTask[taskID] = gwPlan{taskID: taskID, netns: netns, veth: p.name(kindGateway, h), peer: p.name(kindPeer, h)}
	}
	for _, np := range plans {
		for _, e := range np.endpoints {
			add(e.ep.TaskID, e.ep.Netns)
		}
	}
	for _, g := range only {
		if g.TaskID != "" && g.Netns != "" {
			add(g.TaskID, g.Netns)
		}
	}
	out := make([]gwPlan, 0, len(byTask))
	for _, g := range byTask {
		out = append(out, g)
	}
	slices.SortFunc(out, func(a, b gwPlan) int { return strings.Compare(a.taskID, b.taskID) })
	return out
}

// gwIface is the gateway link of a task with address addr, as the Plane configures it.
func (p *Plane) gwIface(addr netip.Addr) Iface {
	return Iface{
		Name: GatewayIfname, MAC: MACFor(addr), MTU: p.mtu + VXLANOverhead, Up: true,
		Addrs:   []netip.Prefix{netip.PrefixFrom(addr, GatewayPrefix().Bits())},
		Gateway: GatewayAddr().Addr(),
	}
}

// gwAddrOf is the address a task's gateway link has in GatewaySubnet and that no other
// task holds, or the zero Addr.
func gwAddrOf(got Iface, used map[netip.Addr]bool) netip.Addr {
	sub := GatewayPrefix()
	for _, a := range got.Addrs {
		if a.Bits() == sub.Bits() && sub.Contains(a.Addr()) && !used[a.Addr()] && gwUsable(a.Addr()) {
			return a.Addr()
		}
	}
	return netip.Addr{}
}

// gwUsable reports whether a can be a task's address: in GatewaySubnet, neither its
// network address, nor the bridge's, nor the broadcast address.
func gwUsable(a netip.Addr) bool {
	sub := GatewayPrefix()
	b := a.As4()
	for i := sub.Bits() / 8; i < 4; i++ {
		b[i] = 0xff
	}
	return sub.Contains(a) && a != sub.Addr() && a != GatewayAddr().Addr() && a != netip.AddrFrom4(b)
}

// reconcileGateway keeps the gateway bridge with its address and a link from each task
// namespace in gws, isolated from each other. A task keeps the address it has; new ones get
// the lowest free.
func (p *Plane) reconcileGateway(gws []gwPlan, host hostState) error {
	bridge := p.GatewayBridge()
	br, ok := host.gwBridge, host.gwBridge.Name != ""
	fresh := !ok
	if !ok {
		p.log.Info("creating gateway bridge", "link", bridge)
		if err := p.nl.AddBridge(bridge, p.mtu+VXLANOverhead); err != nil {
			return fmt.Errorf("add bridge %s: %w", bridge, err)
		}
	} else if !br.Up {
		if err := p.nl.SetUp(bridge); err != nil {
			return fmt.Errorf("set %s up: %w", bridge, err)
		}
	}
	var errs []error
	gwAddr := GatewayAddr()
	have, err := p.nl.LinkAddrs(bridge)
	if err != nil {
		return fmt.Errorf("list addresses of %s: %w", bridge, err)
	}
	found := false
	for _, a := range have {
		switch {
		case a == gwAddr:
			found = true
		case GatewayPrefix().Contains(a.Addr()):
			p.log.Info("removing bridge address", "link", bridge, "addr", a)
			if err := p.nl.DeleteLinkAddr(bridge, a); err != nil {
				errs = append(errs, fmt.Errorf("delete address %s of %s: %w", a, bridge, err))
			}
		}
	}
	if !found {
		p.log.Info("adding bridge address", "link", bridge, "addr", gwAddr)
		if err := p.nl.AddLinkAddr(bridge, gwAddr); err != nil {
			errs = append(errs, fmt.Errorf("add address %s to %s: %w", gwAddr, bridge, err))
		}
	}

	// Links that are as configured keep their addresses; the rest are redone below.
	used := map[netip.Addr]bool{}
	var todo []gwPlan
	for _, g := range gws {
		v, ok := host.veths[g.veth]
		if !ok {
			todo = append(todo, g)
			continue
		}
		got, err := p.nl.Iface(g.netns, GatewayIfname)
		if err != nil && !errors.Is(err, ErrNotFound) {
			errs = append(errs, fmt.Errorf("task %s: read %s in %s: %w", g.taskID, GatewayIfname, g.netns, err))
			continue
		}
		if addr := gwAddrOf(got, used); err == nil && addr.IsValid() && ifaceMatches(got, p.gwIface(addr)) {
			used[addr] = true
			if err := p.attachGateway(v, bridge, !fresh && v.MasterIndex == br.Index); err != nil {
				errs = append(errs, fmt.Errorf("task %s: %w", g.taskID, err))
			}
			continue
		}
		p.log.Info("replacing gateway veth", "link", g.veth, "task", g.taskID, "netns", g.netns)
		if err := p.nl.DeleteLink(g.veth); err != nil {
			errs = append(errs, fmt.Errorf("task %s: delete link %s: %w", g.taskID, g.veth, err))
			continue
		}
		todo = append(todo, g)
	}

	next := GatewayAddr().Addr().Next()
	for _, g := range todo {
		for next.IsValid() && gwUsable(next) && used[next] {
			next = next.Next()
		}
		if !next.IsValid() || !gwUsable(next) {
			errs = append(errs, fmt.Errorf("task %s: %w", g.taskID, ErrGatewayExhausted))
			continue
		}
		addr := next
		used[addr] = true
		if err := p.addGatewayVeth(g, bridge, addr); err != nil {
			errs = append(errs, fmt.Errorf("task %s: %w", g.taskID, err))
		}
	}
	return errors.Join(errs...)
}

// attachGateway puts an existing gateway veth on the bridge, isolated, and up. A port
// joining a bridge starts with default flags, so isolation is set again with the master.
func (p *Plane) attachGateway(l Link, bridge string, onBridge bool) error {
	if !onBridge {
		if err := p.nl.SetMaster(l.Name, bridge); err != nil {
			return fmt.Errorf("attach %s to %s: %w", l.Name, bridge, err)
		}
		if err := p.nl.SetIsolated(l.Name); err != nil {
			return fmt.Errorf("isolate %s: %w", l.Name, err)
		}
	}
	if !l.Up {
		if err := p.nl.SetUp(l.Name); err != nil {
			return fmt.Errorf("set %s up: %w", l.Name, err)
		}
	}
	return nil
}

// addGatewayVeth makes a task's gateway link with address addr; it removes the pair if a
// step fails.
func (p *Plane) addGatewayVeth(g gwPlan, bridge string, addr netip.Addr) (err error) {
	want := p.gwIface(addr)
	p.log.Info("creating gateway veth", "link", g.veth, "task", g.taskID, "addr", want.Addrs[0])
	if err := p.nl.AddVeth(g.veth, bridge, g.netns, g.peer, want.MTU); err != nil {
		return fmt.Errorf("add veth %s: %w", g.veth, err)
	}
	defer func() {
		if err != nil {
			if derr := p.nl.DeleteLink(g.veth); derr != nil {
				err = errors.Join(err, fmt.Errorf("delete link %s: %w", g.veth, derr))
			}
		}
	}()
	if err := p.nl.SetIsolated(g.veth); err != nil {
		return fmt.Errorf("isolate %s: %w", g.veth, err)
	}
	if err := p.nl.ConfigureIface(g.netns, g.peer, want); err != nil {
		return fmt.Errorf("configure %s in %s: %w", GatewayIfname, g.netns, err)
	}
	return nil
}

// TaskGatewayAddr is the address of the gateway link in the task namespace at netns, as the
// kernel holds it (what the host reaches the task on), or an error when it has none yet.
func (p *Plane) TaskGatewayAddr(netns string) (netip.Addr, error) {
	got, err := p.nl.Iface(netns, GatewayIfname)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("read %s in %s: %w", GatewayIfname, netns, err)
	}
	if a := gwAddrOf(got, nil); a.IsValid() {
		return a, nil
	}
	return netip.Addr{}, fmt.Errorf("%s in %s has no address in %s", GatewayIfname, netns, GatewaySubnet)
}
