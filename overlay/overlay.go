package overlay

import (
	"bytes"
	"cmp"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
)

const (
	// VXLANPort is the IANA VXLAN UDP port, used by every node.
	VXLANPort = 4789
	// VXLANOverhead is what VXLAN over IPv4 adds to a frame: outer IP, UDP, VXLAN, inner Ethernet.
	VXLANOverhead = 50
	// DefaultPrefix names the links of a Plane when Config.Prefix is empty.
	DefaultPrefix = "sh"
	// DefaultIfname is the name of a task's interface when Endpoint.Ifname is empty.
	DefaultIfname = "eth0"

	maxIfname = 15 // IFNAMSIZ - 1
	maxPrefix = 6  // leaves room for a kind letter and a 24-bit VNI
	maxVNI    = 1<<24 - 1

	kindBridge = 'b'
	kindVXLAN  = 'v'
	kindVeth   = 'e'
	kindPeer   = 'p' // the task end of a veth before it is renamed
)

var (
	// ErrClosed is returned by Reconcile after Close.
	ErrClosed = errors.New("overlay: plane closed")
	// ErrInvalid marks desired state or configuration the Plane cannot apply.
	ErrInvalid = errors.New("overlay: invalid")
)

// Network is an overlay network this node may carry.
type Network struct {
	ID      string
	VNI     uint32
	Subnet  netip.Prefix
	Gateway netip.Addr
	// HostAddr, when valid, is the node's own address on the network (the ingress network's
	// routing mesh): the bridge exists even without local tasks, carries HostAddr with MAC
	// MACFor(HostAddr), and has neighbour entries for every peer, so the host routes the
	// subnet over the overlay. Without it the bridge has no address in the subnet.
	HostAddr netip.Prefix
}

// Endpoint is a local task's attachment to a network.
type Endpoint struct {
	TaskID    string
	NetworkID string
	Addr      netip.Prefix     // the task's address with the subnet's length
	MAC       net.HardwareAddr // nil: MACFor(Addr.Addr())
	Netns     string           // path of the task's network namespace
	Ifname    string           // name inside the netns; "": eth0. A task on several networks needs distinct names.
}

// Peer is a task of a network running on another node.
type Peer struct {
	NetworkID string
	Addr      netip.Addr
	MAC       net.HardwareAddr // nil: MACFor(Addr)
	VTEP      netip.Addr       // the node's underlay address
}

// Desired is the whole overlay state this node should have.
type Desired struct {
	Networks  []Network
	Endpoints []Endpoint
	Peers     []Peer
	// Gateway gives every task namespace with an endpoint a last link, GatewayIfname, on the
	// node's gateway bridge (GatewayBridge), an address of GatewaySubnet and the default
	// route through the bridge, so that tasks reach the outside (masqueraded by the caller)
	// while their overlay subnets stay on their own links. Without it there is no bridge.
	Gateway bool
	// GatewayOnly are task namespaces on no network that get the gateway link all the same
	// (tasks publishing host-mode ports: the host DNATs to that link's address). Only with
	// Gateway.
	GatewayOnly []GatewayTask
}

// GatewayTask is a task namespace that has no endpoint but needs a gateway link.
type GatewayTask struct {
	TaskID string
	Netns  string // path of the task's network namespace
}

// Config configures a Plane.
type Config struct {
	VTEP        netip.Addr // this node's underlay address
	UnderlayMTU int        // 0: the MTU of the link holding VTEP
	Prefix      string     // link name prefix, at most 6 characters; "": DefaultPrefix
	Logger      *slog.Logger
}

// Plane reconciles the kernel's overlay links with a Desired state. It keeps no state of its
// own besides its configuration: every Reconcile reads the kernel, so a restarted agent finds
// what the previous one made. The Plane owns every host link whose name starts with Prefix.
type Plane struct {
	cfg    Config
	nl     Netlink
	log    *slog.Logger
	cfgErr error

	mu     sync.Mutex
	mtu    int
	closed bool
}

// New returns a Plane that works through nl. Configuration errors surface from Reconcile.
func New(cfg Config, nl Netlink) *Plane {
	if cfg.Prefix == "" {
		cfg.Prefix = DefaultPrefix
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	p := &Plane{cfg: cfg, nl: nl, log: log.With("component", "overlay"), mtu: cfg.UnderlayMTU - VXLANOverhead}
	switch {
	case len(cfg.Prefix) > maxPrefix || strings.ContainsAny(cfg.Prefix, "/ \t\n:"):
		p.cfgErr = fmt.Errorf("%w: link prefix %q: at most %d characters, no spaces, '/' or ':'", ErrInvalid, cfg.Prefix, maxPrefix)
	case !cfg.VTEP.IsValid():
		p.cfgErr = fmt.Errorf("%w: no VTEP address", ErrInvalid)
	case cfg.UnderlayMTU != 0 && p.mtu < 576:
		p.cfgErr = fmt.Errorf("%w: underlay MTU %d too small", ErrInvalid, cfg.UnderlayMTU)
	}
	return p
}

// MACFor is the MAC of a task address: 02:42 and the address's 4 (last) bytes, so that
// every node derives a remote task's MAC without ARP crossing the underlay.
func MACFor(ip netip.Addr) net.HardwareAddr {
	b := ip.As16()
	return net.HardwareAddr{0x02, 0x42, b[12], b[13], b[14], b[15]}
}

// BridgeName is the name of the bridge of a VNI.
func (p *Plane) BridgeName(vni uint32) string {
	return p.name(kindBridge, strconv.FormatUint(uint64(vni), 10))
}

// VXLANName is the name of the VXLAN device of a VNI.
func (p *Plane) VXLANName(vni uint32) string {
	return p.name(kindVXLAN, strconv.FormatUint(uint64(vni), 10))
}

// VethName is the name of the host end of a task's veth on a network.
func (p *Plane) VethName(taskID, networkID string) string {
	return p.name(kindVeth, p.vethHash(taskID, networkID))
}

func (p *Plane) peerName(taskID, networkID string) string {
	return p.name(kindPeer, p.vethHash(taskID, networkID))
}

func (p *Plane) name(kind byte, rest string) string { return p.cfg.Prefix + string(kind) + rest }

func (p *Plane) hashLen() int { return maxIfname - len(p.cfg.Prefix) - 1 }

func (p *Plane) vethHash(taskID, networkID string) string {
	sum := sha256.Sum256([]byte(taskID + "\x00" + networkID))
	return hex.EncodeToString(sum[:])[:p.hashLen()]
}

// parseName tells which of the Plane's names a link name is: its kind and, for bridges and
// VXLAN devices, its VNI. ok is false for names the Plane would not make.
func (p *Plane) parseName(name string) (kind byte, vni uint32, ok bool) {
	rest, found := strings.CutPrefix(name, p.cfg.Prefix)
	if !found || rest == "" {
		return 0, 0, false
	}
	kind, rest = rest[0], rest[1:]
	switch kind {
	case kindBridge, kindVXLAN:
		n, err := strconv.ParseUint(rest, 10, 32)
		if err != nil || n == 0 || n > maxVNI || strconv.FormatUint(n, 10) != rest {
			return 0, 0, false
		}
		return kind, uint32(n), true
	case kindVeth, kindGateway:
		if kind == kindGateway && rest == gwBridgeRest {
			return kind, 0, true
		}
		if len(rest) != p.hashLen() || strings.Trim(rest, "0123456789abcdef") != "" {
			return 0, 0, false
		}
		return kind, 0, true
	}
	return 0, 0, false
}

// netPlan is one network with local endpoints, as Reconcile wants it.
type netPlan struct {
	net       Network
	bridge    string
	vxlan     string
	endpoints []epPlan
	fdb       []FDBEntry // sorted by MAC
	neighbors []Neighbor // every remote and local task, sorted by IP
}

// wanted reports whether the network needs its bridge here: local tasks or a host address.
func (np *netPlan) wanted() bool { return len(np.endpoints) > 0 || np.net.HostAddr.IsValid() }

type epPlan struct {
	ep     Endpoint
	veth   string
	peer   string
	ifname string
	mac    net.HardwareAddr
}

// plan validates d and groups it by network. Invalid items are left out and reported.
func (p *Plane) plan(d Desired) ([]*netPlan, []error) {
	var errs []error
	byID := map[string]*netPlan{}
	vnis := map[uint32]string{}
	for _, n := range d.Networks {
		switch {
		case n.ID == "":
			errs = append(errs, fmt.Errorf("%w: network with no ID", ErrInvalid))
			continue
		case n.VNI == 0 || n.VNI > maxVNI:
			errs = append(errs, fmt.Errorf("%w: network %s: VNI %d out of range", ErrInvalid, n.ID, n.VNI))
			continue
		case !n.Subnet.IsValid():
			errs = append(errs, fmt.Errorf("%w: network %s: no subnet", ErrInvalid, n.ID))
			continue
		case byID[n.ID] != nil:
			errs = append(errs, fmt.Errorf("%w: network %s listed twice", ErrInvalid, n.ID))
			continue
		case vnis[n.VNI] != "":
			errs = append(errs, fmt.Errorf("%w: network %s: VNI %d already used by %s", ErrInvalid, n.ID, n.VNI, vnis[n.VNI]))
			continue
		case n.HostAddr.IsValid() && (n.HostAddr.Bits() != n.Subnet.Bits() || !n.Subnet.Contains(n.HostAddr.Addr())):
			errs = append(errs, fmt.Errorf("%w: network %s: host address %s not in subnet %s", ErrInvalid, n.ID, n.HostAddr, n.Subnet))
			continue
		}
		vnis[n.VNI] = n.ID
		byID[n.ID] = &netPlan{net: n, bridge: p.BridgeName(n.VNI), vxlan: p.VXLANName(n.VNI)}
	}

	seen := map[string]bool{}
	ifnames := map[string]string{} // netns + ifname -> veth
	for _, ep := range d.Endpoints {
		np := byID[ep.NetworkID]
		ifname := cmp.Or(ep.Ifname, DefaultIfname)
		veth := p.VethName(ep.TaskID, ep.NetworkID)
		switch {
		case np == nil:
			errs = append(errs, fmt.Errorf("%w: endpoint of task %s: unknown network %q", ErrInvalid, ep.TaskID, ep.NetworkID))
			continue
		case ep.TaskID == "" || ep.Netns == "":
			errs = append(errs, fmt.Errorf("%w: endpoint on network %s: no task ID or netns", ErrInvalid, ep.NetworkID))
			continue
		case !ep.Addr.IsValid() || !np.net.Subnet.Contains(ep.Addr.Addr()):
			errs = append(errs, fmt.Errorf("%w: endpoint of task %s: address %s not in subnet %s", ErrInvalid, ep.TaskID, ep.Addr, np.net.Subnet))
			continue
		case len(ifname) > maxIfname || ifname == "lo" || strings.ContainsAny(ifname, "/ :") || d.Gateway && ifname == GatewayIfname:
			errs = append(errs, fmt.Errorf("%w: endpoint of task %s: interface name %q", ErrInvalid, ep.TaskID, ifname))
			continue
		case seen[veth]:
			errs = append(errs, fmt.Errorf("%w: task %s listed twice on network %s", ErrInvalid, ep.TaskID, ep.NetworkID))
			continue
		case ifnames[ep.Netns+"\x00"+ifname] != "":
			errs = append(errs, fmt.Errorf("%w: task %s: interface %s of %s used twice", ErrInvalid, ep.TaskID, ifname, ep.Netns))
			continue
		}
		seen[veth] = true
		ifnames[ep.Netns+"\x00"+ifname] = veth
		mac := ep.MAC
		if mac == nil {
			mac = MACFor(ep.Addr.Addr())
		}
		np.endpoints = append(np.endpoints, epPlan{ep: ep, veth: veth, peer: p.peerName(ep.TaskID, ep.NetworkID), ifname: ifname, mac: mac})
	}

	var plans []*netPlan
	for _, np := range byID {
		if !np.wanted() {
			continue // no bridge where no local task is
		}
		plans = append(plans, np)
		slices.SortFunc(np.endpoints, func(a, b epPlan) int { return cmp.Compare(a.veth, b.veth) })
	}
	slices.SortFunc(plans, func(a, b *netPlan) int { return cmp.Compare(a.net.VNI, b.net.VNI) })

	for _, pr := range d.Peers {
		np := byID[pr.NetworkID]
		if np == nil || !np.wanted() || pr.VTEP == p.cfg.VTEP {
			continue // a network without local tasks needs no entries; a "peer" here is local
		}
		if slices.ContainsFunc(np.endpoints, func(e epPlan) bool { return e.ep.Addr.Addr() == pr.Addr }) ||
			np.net.HostAddr.IsValid() && np.net.HostAddr.Addr() == pr.Addr {
			continue // stale: the address is a local task's or the host's now
		}
		if !pr.Addr.IsValid() || !pr.VTEP.IsValid() {
			errs = append(errs, fmt.Errorf("%w: peer %s on network %s: no address or VTEP", ErrInvalid, pr.Addr, pr.NetworkID))
			continue
		}
		mac := pr.MAC
		if mac == nil {
			mac = MACFor(pr.Addr)
		}
		np.fdb = append(np.fdb, FDBEntry{MAC: mac, VTEP: pr.VTEP})
		np.neighbors = append(np.neighbors, Neighbor{IP: pr.Addr, MAC: mac})
	}
	for _, np := range plans {
		for _, e := range np.endpoints {
			np.neighbors = append(np.neighbors, Neighbor{IP: e.ep.Addr.Addr(), MAC: e.mac})
		}
		if h := np.net.HostAddr; h.IsValid() {
			np.neighbors = append(np.neighbors, Neighbor{IP: h.Addr(), MAC: MACFor(h.Addr())})
		}
		// One entry per IP and per MAC; a local task wins over a stale peer, then the first listed.
		np.neighbors = uniqueLast(np.neighbors, func(n Neighbor) string { return n.IP.String() })
		np.fdb = uniqueFirst(np.fdb, func(e FDBEntry) string { return e.MAC.String() })
		slices.SortFunc(np.neighbors, func(a, b Neighbor) int { return a.IP.Compare(b.IP) })
		slices.SortFunc(np.fdb, func(a, b FDBEntry) int { return bytes.Compare(a.MAC, b.MAC) })
	}
	return plans, errs
}

func uniqueFirst[T any](s []T, key func(T) string) []T {
	seen := map[string]bool{}
	return slices.DeleteFunc(s, func(v T) bool {
		k := key(v)
		dup := seen[k]
		seen[k] = true
		return dup
	})
}

func uniqueLast[T any](s []T, key func(T) string) []T {
	slices.Reverse(s)
	s = uniqueFirst(s, key)
	slices.Reverse(s)
	return s
}

// hostState is what Reconcile found of its own links.
type hostState struct {
	bridges map[string]Link // by name
	vxlans  map[string]Link
	veths   map[string]Link // endpoints' and gateway links'
	// gwBridge is the gateway bridge; no Name if there is none.
	gwBridge Link
	other    []Link // our names, wrong kind
}

func (p *Plane) readHost() (hostState, error) {
	links, err := p.nl.Links(p.cfg.Prefix)
	if err != nil {
		return hostState{}, fmt.Errorf("list links: %w", err)
	}
	s := hostState{bridges: map[string]Link{}, vxlans: map[string]Link{}, veths: map[string]Link{}}
	for _, l := range links {
		kind, _, ok := p.parseName(l.Name)
		switch {
		case !ok:
			continue // not a name we make
		case kind == kindBridge && l.Kind == "bridge":
			s.bridges[l.Name] = l
		case kind == kindVXLAN && l.Kind == "vxlan":
			s.vxlans[l.Name] = l
		case (kind == kindVeth || kind == kindGateway && l.Name != p.GatewayBridge()) && l.Kind == "veth":
			s.veths[l.Name] = l
		case l.Name == p.GatewayBridge() && l.Kind == "bridge":
			s.gwBridge = l
		default:
			s.other = append(s.other, l)
		}
	}
	return s, nil
}

// Reconcile makes the kernel match d: it creates, repairs and removes bridges, VXLAN devices,
// veths, FDB and neighbour entries. A second call with the same d changes nothing. It goes on
// past a failing network or endpoint and returns every error, joined.
func (p *Plane) Reconcile(d Desired) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return ErrClosed
	}
	if p.cfgErr != nil {
		return p.cfgErr
	}
	plans, errs := p.plan(d)
	var gws []gwPlan
	if d.Gateway {
		gws = p.planGateway(plans, d.GatewayOnly)
	}

	host, err := p.readHost()
	if err != nil {
		return errors.Join(append(errs, err)...)
	}
	if (len(plans) > 0 || len(gws) > 0) && p.mtu <= 0 {
		under, err := p.nl.UnderlayMTU(p.cfg.VTEP)
		if err != nil {
			return errors.Join(append(errs, fmt.Errorf("underlay MTU of %s: %w", p.cfg.VTEP, err))...)
		}
		p.mtu = under - VXLANOverhead
	}

	// Removals first: links of gone endpoints and networks, and anything squatting our names.
	wantVeth := map[string]bool{}
	wantNet := map[string]bool{}
	for _, np := range plans {
		wantNet[np.bridge], wantNet[np.vxlan] = true, true
		for _, e := range np.endpoints {
			wantVeth[e.veth] = true
		}
	}
	for _, g := range gws {
		wantVeth[g.veth] = true
	}
	var stale []string
	for _, l := range host.other {
		stale = append(stale, l.Name)
	}
	for _, m := range []map[string]Link{host.veths, host.vxlans, host.bridges} {
		var names []string
		for name := range m {
			if !wantVeth[name] && !wantNet[name] {
				names = append(names, name)
			}
		}
		slices.Sort(names)
		stale = append(stale, names...)
	}
	if host.gwBridge.Name != "" && len(gws) == 0 {
		stale = append(stale, host.gwBridge.Name)
		host.gwBridge = Link{}
	}
	for _, name := range stale {
		p.log.Info("removing link", "link", name)
		if err := p.nl.DeleteLink(name); err != nil {
			errs = append(errs, fmt.Errorf("delete link %s: %w", name, err))
		}
		delete(host.veths, name)
		delete(host.vxlans, name)
		delete(host.bridges, name)
	}

	for _, np := range plans {
		if err := p.reconcileNetwork(np, host); err != nil {
			errs = append(errs, fmt.Errorf("network %s (vni %d): %w", np.net.ID, np.net.VNI, err))
		}
	}
	if len(gws) > 0 {
		if err := p.reconcileGateway(gws, host); err != nil {
			errs = append(errs, fmt.Errorf("gateway: %w", err))
		}
	}
	return errors.Join(errs...)
}

func (p *Plane) reconcileNetwork(np *netPlan, host hostState) error {
	// The bridge, up.
	br, ok := host.bridges[np.bridge]
	freshBridge := !ok
	if !ok {
		p.log.Info("creating bridge", "link", np.bridge, "network", np.net.ID)
		if err := p.nl.AddBridge(np.bridge, p.mtu); err != nil {
			return fmt.Errorf("add bridge %s: %w", np.bridge, err)
		}
	} else if !br.Up {
		if err := p.nl.SetUp(np.bridge); err != nil {
			return fmt.Errorf("set %s up: %w", np.bridge, err)
		}
	}
	onBridge := func(l Link) bool { return !freshBridge && l.MasterIndex == br.Index }

	// The VXLAN device on it, recreated if its identity differs.
	want := VXLAN{VNI: np.net.VNI, Local: p.cfg.VTEP, Port: VXLANPort}
	vx, ok := host.vxlans[np.vxlan]
	if ok && vx.VXLAN != want {
		p.log.Info("replacing vxlan device", "link", np.vxlan, "have", vx.VXLAN, "want", want)
		if err := p.nl.DeleteLink(np.vxlan); err != nil {
			return fmt.Errorf("delete link %s: %w", np.vxlan, err)
		}
		ok = false
	}
	if !ok {
		p.log.Info("creating vxlan device", "link", np.vxlan, "network", np.net.ID, "vni", np.net.VNI)
		if err := p.nl.AddVXLAN(np.vxlan, want, p.mtu, np.bridge); err != nil {
			return fmt.Errorf("add vxlan %s: %w", np.vxlan, err)
		}
	} else if err := p.attach(vx, np.bridge, onBridge(vx)); err != nil {
		return err
	}

	// Static forwarding of remote MACs to their VTEPs.
	var errs []error
	if err := p.reconcileFDB(np); err != nil {
		errs = append(errs, err)
	}
	if err := p.reconcileHost(np, br, freshBridge); err != nil {
		errs = append(errs, err)
	}
	for _, e := range np.endpoints {
		if err := p.reconcileEndpoint(np, e, host, onBridge); err != nil {
			errs = append(errs, fmt.Errorf("endpoint of task %s: %w", e.ep.TaskID, err))
		}
	}
	return errors.Join(errs...)
}

// attach puts an existing link on the bridge and up.
func (p *Plane) attach(l Link, bridge string, onBridge bool) error {
	if !onBridge {
		if err := p.nl.SetMaster(l.Name, bridge); err != nil {
			return fmt.Errorf("attach %s to %s: %w", l.Name, bridge, err)
		}
	}
	if !l.Up {
		if err := p.nl.SetUp(l.Name); err != nil {
			return fmt.Errorf("set %s up: %w", l.Name, err)
		}
	}
	return nil
}

// reconcileHost gives the bridge the host address (and its MAC) or none in the subnet, and,
// with an address, neighbour entries for every peer and local task.
func (p *Plane) reconcileHost(np *netPlan, br Link, fresh bool) error {
	host := np.net.HostAddr
	have, err := p.nl.LinkAddrs(np.bridge)
	if err != nil {
		return fmt.Errorf("list addresses of %s: %w", np.bridge, err)
	}
	var errs []error
	found := false
	for _, a := range have {
		switch {
		case a == host:
			found = true
		case np.net.Subnet.Contains(a.Addr()):
			p.log.Info("removing bridge address", "link", np.bridge, "addr", a)
			if err := p.nl.DeleteLinkAddr(np.bridge, a); err != nil {
				errs = append(errs, fmt.Errorf("delete address %s of %s: %w", a, np.bridge, err))
			}
		}
	}
	if !host.IsValid() {
		return errors.Join(errs...)
	}
	if mac := MACFor(host.Addr()); fresh || !bytes.Equal(br.MAC, mac) {
		if err := p.nl.SetHardwareAddr(np.bridge, mac); err != nil {
			return errors.Join(append(errs, fmt.Errorf("set MAC of %s: %w", np.bridge, err))...)
		}
	}
	if !found {
		p.log.Info("adding bridge address", "link", np.bridge, "addr", host)
		if err := p.nl.AddLinkAddr(np.bridge, host); err != nil {
			errs = append(errs, fmt.Errorf("add address %s to %s: %w", host, np.bridge, err))
		}
	}
	if err := p.reconcileNeighborsOf("", np.bridge, host.Addr(), np.neighbors); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

func (p *Plane) reconcileFDB(np *netPlan) error {
	have, err := p.nl.FDB(np.vxlan)
	if err != nil {
		return fmt.Errorf("list fdb of %s: %w", np.vxlan, err)
	}
	want := map[string]FDBEntry{}
	for _, e := range np.fdb {
		want[e.MAC.String()] = e
	}
	var errs []error
	found := map[string]bool{}
	for _, e := range have {
		k := e.MAC.String()
		if w, ok := want[k]; ok && w.VTEP == e.VTEP && !found[k] {
			found[k] = true
			continue
		}
		// Gone, moved to another VTEP, or a duplicate: a moved MAC is set again below.
		p.log.Debug("removing fdb entry", "link", np.vxlan, "mac", e.MAC.String(), "vtep", e.VTEP)
		if err := p.nl.DeleteFDB(np.vxlan, e); err != nil {
			errs = append(errs, fmt.Errorf("delete fdb %s on %s: %w", e.MAC, np.vxlan, err))
		}
	}
	for _, e := range np.fdb {
		if found[e.MAC.String()] {
			continue
		}
		p.log.Debug("setting fdb entry", "link", np.vxlan, "mac", e.MAC.String(), "vtep", e.VTEP)
		if err := p.nl.SetFDB(np.vxlan, e); err != nil {
			errs = append(errs, fmt.Errorf("set fdb %s on %s: %w", e.MAC, np.vxlan, err))
		}
	}
	return errors.Join(errs...)
}

func (p *Plane) reconcileEndpoint(np *netPlan, e epPlan, host hostState, onBridge func(Link) bool) error {
	wantIf := Iface{Name: e.ifname, MAC: e.mac, MTU: p.mtu, Addrs: []netip.Prefix{e.ep.Addr}, Up: true}
	veth, ok := host.veths[e.veth]
	if ok {
		// The host end exists; the task end must be as configured, or the pair is redone.
		got, err := p.nl.Iface(e.ep.Netns, e.ifname)
		if err != nil && !errors.Is(err, ErrNotFound) {
			return fmt.Errorf("read %s in %s: %w", e.ifname, e.ep.Netns, err)
		}
		if err != nil || !ifaceMatches(got, wantIf) {
			p.log.Info("replacing veth", "link", e.veth, "task", e.ep.TaskID, "netns", e.ep.Netns)
			if err := p.nl.DeleteLink(e.veth); err != nil {
				return fmt.Errorf("delete link %s: %w", e.veth, err)
			}
			ok = false
		} else if err := p.attach(veth, np.bridge, onBridge(veth)); err != nil {
			return err
		}
	}
	if !ok {
		p.log.Info("creating veth", "link", e.veth, "task", e.ep.TaskID, "network", np.net.ID, "addr", e.ep.Addr)
		if err := p.nl.AddVeth(e.veth, np.bridge, e.ep.Netns, e.peer, p.mtu); err != nil {
			return fmt.Errorf("add veth %s: %w", e.veth, err)
		}
		if err := p.nl.ConfigureIface(e.ep.Netns, e.peer, wantIf); err != nil {
			if derr := p.nl.DeleteLink(e.veth); derr != nil {
				err = errors.Join(err, fmt.Errorf("delete link %s: %w", e.veth, derr))
			}
			return fmt.Errorf("configure %s in %s: %w", e.ifname, e.ep.Netns, err)
		}
	}
	return p.reconcileNeighbors(np, e)
}

// ifaceMatches reports whether a task interface is as the Plane configures it. Extra
// addresses (an IPv6 link-local one) are allowed.
func ifaceMatches(got, want Iface) bool {
	if !bytes.Equal(got.MAC, want.MAC) || got.MTU != want.MTU || got.Up != want.Up || got.Gateway != want.Gateway {
		return false
	}
	for _, a := range want.Addrs {
		if !slices.Contains(got.Addrs, a) {
			return false
		}
	}
	return true
}

func (p *Plane) reconcileNeighbors(np *netPlan, e epPlan) error {
	return p.reconcileNeighborsOf(e.ep.Netns, e.ifname, e.ep.Addr.Addr(), np.neighbors)
}

// reconcileNeighborsOf makes the permanent neighbour entries of dev in netns ("" the host's)
// be neighbors, less own.
func (p *Plane) reconcileNeighborsOf(netns, dev string, own netip.Addr, neighbors []Neighbor) error {
	where := netns
	if where == "" {
		where = "host"
	}
	have, err := p.nl.Neighbors(netns, dev)
	if err != nil {
		return fmt.Errorf("list neighbours of %s in %s: %w", dev, where, err)
	}
	want := map[netip.Addr]net.HardwareAddr{}
	for _, n := range neighbors {
		if n.IP != own {
			want[n.IP] = n.MAC
		}
	}
	var errs []error
	ok := map[netip.Addr]bool{}
	for _, n := range have {
		if mac, wanted := want[n.IP]; wanted {
			ok[n.IP] = bytes.Equal(mac, n.MAC)
			continue // a wrong MAC is replaced below
		}
		p.log.Debug("removing neighbour", "netns", where, "dev", dev, "ip", n.IP)
		if err := p.nl.DeleteNeighbor(netns, dev, n); err != nil {
			errs = append(errs, fmt.Errorf("delete neighbour %s in %s: %w", n.IP, where, err))
		}
	}
	for _, n := range neighbors {
		if n.IP == own || ok[n.IP] {
			continue
		}
		p.log.Debug("setting neighbour", "netns", where, "dev", dev, "ip", n.IP, "mac", n.MAC.String())
		if err := p.nl.SetNeighbor(netns, dev, n); err != nil {
			errs = append(errs, fmt.Errorf("set neighbour %s in %s: %w", n.IP, where, err))
		}
	}
	return errors.Join(errs...)
}

// Close removes what the Plane owns and nothing uses: bridges (the gateway bridge too)
// without a task veth, with their VXLAN devices. The links of running tasks stay, so an
// agent that restarts finds them and Reconcile carries on. Reconcile(Desired{}) removes everything. Close is idempotent.
func (p *Plane) Close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil
	}
	p.closed = true
	if p.cfgErr != nil {
		return nil
	}
	host, err := p.readHost()
	if err != nil {
		return err
	}
	used := map[int]bool{}
	for _, v := range host.veths {
		used[v.MasterIndex] = true
	}
	var names []string
	for name := range host.vxlans {
		_, vni, _ := p.parseName(name)
		br, ok := host.bridges[p.BridgeName(vni)]
		if !ok || !used[br.Index] {
			names = append(names, name)
		}
	}
	for name, br := range host.bridges {
		if !used[br.Index] {
			names = append(names, name)
		}
	}
	if br := host.gwBridge; br.Name != "" && !used[br.Index] {
		names = append(names, br.Name)
	}
	slices.Sort(names)
	var errs []error
	for _, name := range names {
		p.log.Info("removing unused link", "link", name)
		if err := p.nl.DeleteLink(name); err != nil {
			errs = append(errs, fmt.Errorf("delete link %s: %w", name, err))
		}
	}
	return errors.Join(errs...)
}
