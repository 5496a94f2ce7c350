package overlay

import (
	"errors"
	"net"
	"net/netip"
)

// ErrNotFound is returned by a Netlink when a link it is asked about does not exist.
var ErrNotFound = errors.New("overlay: link not found")

// Netlink is the small set of kernel operations the Plane needs. Host methods act on the
// namespace the implementation is bound to; methods taking a netns path act inside that
// task namespace. Kernel is the real one; overlaytest has a model and a recorder for tests.
type Netlink interface {
	// Links lists the links of the host namespace whose names start with prefix.
	Links(prefix string) ([]Link, error)
	// UnderlayMTU is the MTU of the host link that carries vtep.
	UnderlayMTU(vtep netip.Addr) (int, error)

	// AddBridge creates a bridge, up.
	AddBridge(name string, mtu int) error
	// AddVXLAN creates a VXLAN device enslaved to master, up.
	AddVXLAN(name string, v VXLAN, mtu int, master string) error
	// AddVeth creates a veth pair: name in the host namespace, enslaved to master and up;
	// peer created down inside the namespace at peerNetns.
	AddVeth(name, master, peerNetns, peer string, mtu int) error
	SetMaster(name, master string) error
	// SetIsolated makes a bridge port isolated: it forwards only to the bridge's
	// non-isolated ports and the bridge itself, never to another isolated port.
	SetIsolated(name string) error
	SetUp(name string) error
	// DeleteLink deletes a host link (for a veth, both ends); a missing link is no error.
	DeleteLink(name string) error

	// FDB lists the static (self) forwarding entries of a VXLAN device.
	FDB(dev string) ([]FDBEntry, error)
	// SetFDB adds or replaces a permanent self entry: MAC behind a remote VTEP.
	SetFDB(dev string, e FDBEntry) error
	DeleteFDB(dev string, e FDBEntry) error

	// SetHardwareAddr sets the MAC of a host link.
	SetHardwareAddr(name string, mac net.HardwareAddr) error
	// LinkAddrs lists the IPv4 addresses of a host link.
	LinkAddrs(name string) ([]netip.Prefix, error)
	AddLinkAddr(name string, addr netip.Prefix) error
	DeleteLinkAddr(name string, addr netip.Prefix) error

	// Iface reads a link inside a task namespace; ErrNotFound if it does not exist.
	Iface(netns, name string) (Iface, error)
	// ConfigureIface renames link name inside netns to want.Name and gives it want's MAC,
	// MTU and addresses, then sets it and lo up, and, if want.Gateway is valid, makes the
	// namespace's default route go through it over the link.
	ConfigureIface(netns, name string, want Iface) error
	// Neighbors lists the permanent neighbour entries of dev inside netns; netns "" is the
	// host namespace (for the neighbour entries of a bridge carrying a host address).
	Neighbors(netns, dev string) ([]Neighbor, error)
	// SetNeighbor adds or replaces a permanent neighbour entry.
	SetNeighbor(netns, dev string, n Neighbor) error
	DeleteNeighbor(netns, dev string, n Neighbor) error
}

// Link is what the Plane reads of a host link.
type Link struct {
	Name        string
	Kind        string // "bridge", "vxlan", "veth", ...
	Index       int
	MasterIndex int
	MTU         int
	Up          bool
	MAC         net.HardwareAddr
	VXLAN       VXLAN // Kind "vxlan" only
}

// VXLAN holds the attributes of a VXLAN device that the Plane sets.
type VXLAN struct {
	VNI      uint32
	Local    netip.Addr
	Port     int
	Learning bool
}

// Iface is a link inside a task namespace.
type Iface struct {
	Name  string
	MAC   net.HardwareAddr
	MTU   int
	Addrs []netip.Prefix
	Up    bool
	// Gateway is the next hop of the namespace's default route when it leaves over this
	// link; the zero Addr when it does not.
	Gateway netip.Addr
}

// Neighbor is a permanent IP -> MAC entry in a task namespace.
type Neighbor struct {
	IP  netip.Addr
	MAC net.HardwareAddr
}

// FDBEntry sends frames for MAC to the remote VTEP.
type FDBEntry struct {
	MAC  net.HardwareAddr
	VTEP netip.Addr
}
