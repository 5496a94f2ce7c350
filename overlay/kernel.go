package overlay

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// Kernel is the real Netlink: rtnetlink on a handle bound to one host namespace. Task
// namespaces are reached by path, through a handle opened for each call, so no goroutine
// ever changes its thread's namespace.
type Kernel struct {
	h *netlink.Handle
}

var _ Netlink = (*Kernel)(nil)

// RealNetlink returns a Kernel working in the namespace of the calling process.
func RealNetlink() *Kernel { return &Kernel{h: &netlink.Handle{}} }

// RealNetlinkAt returns a Kernel whose host namespace is ns (a test's "host"). The caller
// keeps ns open while the Kernel is used and calls Close.
func RealNetlinkAt(ns netns.NsHandle) (*Kernel, error) {
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		return nil, fmt.Errorf("netlink handle in %s: %w", ns, err)
	}
	return &Kernel{h: h}, nil
}

// Close releases the Kernel's netlink sockets.
func (k *Kernel) Close() error {
	k.h.Close()
	return nil
}

// dumpRetries bounds the retries of a dump the kernel reports as interrupted by a change.
const dumpRetries = 5

func retryDump[T any](f func() ([]T, error)) ([]T, error) {
	var err error
	for range dumpRetries {
		var res []T
		if res, err = f(); !errors.Is(err, netlink.ErrDumpInterrupted) {
			return res, err
		}
	}
	return nil, err
}

func (k *Kernel) Links(prefix string) ([]Link, error) {
	links, err := retryDump(k.h.LinkList)
	if err != nil {
		return nil, err
	}
	var res []Link
	for _, l := range links {
		a := l.Attrs()
		if !strings.HasPrefix(a.Name, prefix) {
			continue
		}
		ln := Link{Name: a.Name, Kind: l.Type(), Index: a.Index, MasterIndex: a.MasterIndex, MTU: a.MTU, Up: a.Flags&net.FlagUp != 0, MAC: a.HardwareAddr}
		if vx, ok := l.(*netlink.Vxlan); ok {
			local, _ := netip.AddrFromSlice(vx.SrcAddr)
			ln.VXLAN = VXLAN{VNI: uint32(vx.VxlanId), Local: local.Unmap(), Port: vx.Port, Learning: vx.Learning}
		}
		res = append(res, ln)
	}
	return res, nil
}

func (k *Kernel) UnderlayMTU(vtep netip.Addr) (int, error) {
	addrs, err := retryDump(func() ([]netlink.Addr, error) { return k.h.AddrList(nil, netlink.FAMILY_ALL) })
	if err != nil {
		return 0, fmt.Errorf("list addresses: %w", err)
	}
	for _, a := range addrs {
		if ip, ok := netip.AddrFromSlice(a.IP); ok && ip.Unmap() == vtep {
			l, err := k.h.LinkByIndex(a.LinkIndex)
			if err != nil {
				return 0, fmt.Errorf("link %d: %w", a.LinkIndex, err)
			}
			return l.Attrs().MTU, nil
		}
	}
	return 0, fmt.Errorf("no link has address %s", vtep)
}

func (k *Kernel) link(name string) (netlink.Link, error) {
	l, err := k.h.LinkByName(name)
	if _, ok := errors.AsType[netlink.LinkNotFoundError](err); ok {
		return nil, fmt.Errorf("%s: %w", name, ErrNotFound)
	}
	return l, err
}

// addUp creates l, puts it on master (if any) and sets it up; it removes l if a step fails.
func (k *Kernel) addUp(l netlink.Link, master string) (err error) {
	if err := k.h.LinkAdd(l); err != nil {
		return err
	}
	defer func() {
		if err != nil {
			_ = k.h.LinkDel(l)
		}
	}()
	if master != "" {
		m, err := k.link(master)
		if err != nil {
			return err
		}
		if err := k.h.LinkSetMaster(l, m); err != nil {
			return fmt.Errorf("set master %s: %w", master, err)
		}
	}
	if err := k.h.LinkSetUp(l); err != nil {
		return fmt.Errorf("set up: %w", err)
	}
	return nil
}

func (k *Kernel) AddBridge(name string, mtu int) error {
	return k.addUp(&netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: name, MTU: mtu}}, "")
}

func (k *Kernel) AddVXLAN(name string, v VXLAN, mtu int, master string) error {
	return k.addUp(&netlink.Vxlan{
		LinkAttrs: netlink.LinkAttrs{Name: name, MTU: mtu},
		VxlanId:   int(v.VNI),
		SrcAddr:   net.IP(v.Local.AsSlice()),
		Port:      v.Port,
		Learning:  v.Learning,
	}, master)
}

func (k *Kernel) AddVeth(name, master, peerNetns, peer string, mtu int) error {
	ns, err := netns.GetFromPath(peerNetns)
	if err != nil {
		return fmt.Errorf("open netns %s: %w", peerNetns, err)
	}
	defer ns.Close()
	return k.addUp(&netlink.Veth{
		LinkAttrs:     netlink.LinkAttrs{Name: name, MTU: mtu},
		PeerName:      peer,
		PeerMTU:       uint32(mtu),
		PeerNamespace: netlink.NsFd(ns),
	}, master)
}

func (k *Kernel) SetMaster(name, master string) error {
	l, err := k.link(name)
	if err != nil {
		return err
	}
	m, err := k.link(master)
	if err != nil {
		return err
	}
	return k.h.LinkSetMaster(l, m)
}

func (k *Kernel) SetIsolated(name string) error {
	l, err := k.link(name)
	if err != nil {
		return err
	}
	return k.h.LinkSetIsolated(l, true)
}

func (k *Kernel) SetUp(name string) error {
	l, err := k.link(name)
	if err != nil {
		return err
	}
	return k.h.LinkSetUp(l)
}

func (k *Kernel) DeleteLink(name string) error {
	l, err := k.link(name)
	if errors.Is(err, ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	return k.h.LinkDel(l)
}

func (k *Kernel) FDB(dev string) ([]FDBEntry, error) {
	l, err := k.link(dev)
	if err != nil {
		return nil, err
	}
	neighs, err := retryDump(func() ([]netlink.Neigh, error) { return k.h.NeighList(l.Attrs().Index, unix.AF_BRIDGE) })
	if err != nil {
		return nil, err
	}
	var res []FDBEntry
	for _, n := range neighs {
		vtep, ok := netip.AddrFromSlice(n.IP)
		if n.Flags&netlink.NTF_SELF == 0 || n.Flags&netlink.NTF_MASTER != 0 || !ok || len(n.HardwareAddr) == 0 {
			continue // the bridge's entries for the port, or a default destination
		}
		res = append(res, FDBEntry{MAC: n.HardwareAddr, VTEP: vtep.Unmap()})
	}
	return res, nil
}

func (k *Kernel) fdbNeigh(dev string, e FDBEntry) (*netlink.Neigh, error) {
	l, err := k.link(dev)
	if err != nil {
		return nil, err
	}
	return &netlink.Neigh{
		LinkIndex:    l.Attrs().Index,
		Family:       unix.AF_BRIDGE,
		State:        netlink.NUD_PERMANENT,
		Flags:        netlink.NTF_SELF,
		IP:           net.IP(e.VTEP.AsSlice()),
		HardwareAddr: e.MAC,
	}, nil
}

func (k *Kernel) SetFDB(dev string, e FDBEntry) error {
	n, err := k.fdbNeigh(dev, e)
	if err != nil {
		return err
	}
	return k.h.NeighSet(n)
}

func (k *Kernel) DeleteFDB(dev string, e FDBEntry) error {
	n, err := k.fdbNeigh(dev, e)
	if err != nil {
		return err
	}
	return k.h.NeighDel(n)
}

func (k *Kernel) SetHardwareAddr(name string, mac net.HardwareAddr) error {
	l, err := k.link(name)
	if err != nil {
		return err
	}
	return k.h.LinkSetHardwareAddr(l, mac)
}

func (k *Kernel) LinkAddrs(name string) ([]netip.Prefix, error) {
	l, err := k.link(name)
	if err != nil {
		return nil, err
	}
	addrs, err := retryDump(func() ([]netlink.Addr, error) { return k.h.AddrList(l, netlink.FAMILY_V4) })
	if err != nil {
		return nil, fmt.Errorf("list addresses of %s: %w", name, err)
	}
	var res []netip.Prefix
	for _, a := range addrs {
		if ip, ok := netip.AddrFromSlice(a.IP); ok {
			ones, _ := a.Mask.Size()
			res = append(res, netip.PrefixFrom(ip.Unmap(), ones))
		}
	}
	return res, nil
}

func nlAddr(p netip.Prefix) *netlink.Addr {
	return &netlink.Addr{IPNet: &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}}
}

func (k *Kernel) AddLinkAddr(name string, addr netip.Prefix) error {
	l, err := k.link(name)
	if err != nil {
		return err
	}
	return k.h.AddrReplace(l, nlAddr(addr))
}

func (k *Kernel) DeleteLinkAddr(name string, addr netip.Prefix) error {
	l, err := k.link(name)
	if err != nil {
		return err
	}
	return k.h.AddrDel(l, nlAddr(addr))
}

// inNetns runs f with a handle inside the namespace at path; "" is the Kernel's own.
func (k *Kernel) inNetns(path string, f func(h *netlink.Handle) error) error {
	if path == "" {
		return f(k.h)
	}
	return inNetns(path, f)
}

// inNetns runs f with a handle inside the namespace at path.
func inNetns(path string, f func(h *netlink.Handle) error) error {
	ns, err := netns.GetFromPath(path)
	if err != nil {
		return fmt.Errorf("open netns %s: %w", path, err)
	}
	defer ns.Close()
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		return fmt.Errorf("netlink handle in %s: %w", path, err)
	}
	defer h.Close()
	return f(h)
}

func linkIn(h *netlink.Handle, name string) (netlink.Link, error) {
	l, err := h.LinkByName(name)
	if _, ok := errors.AsType[netlink.LinkNotFoundError](err); ok {
		return nil, fmt.Errorf("%s: %w", name, ErrNotFound)
	}
	return l, err
}

func (k *Kernel) Iface(path, name string) (Iface, error) {
	var res Iface
	err := inNetns(path, func(h *netlink.Handle) error {
		l, err := linkIn(h, name)
		if err != nil {
			return err
		}
		a := l.Attrs()
		res = Iface{Name: a.Name, MAC: a.HardwareAddr, MTU: a.MTU, Up: a.Flags&net.FlagUp != 0}
		addrs, err := retryDump(func() ([]netlink.Addr, error) { return h.AddrList(l, netlink.FAMILY_ALL) })
		if err != nil {
			return fmt.Errorf("list addresses of %s: %w", name, err)
		}
		for _, ad := range addrs {
			ip, ok := netip.AddrFromSlice(ad.IP)
			ones, _ := ad.Mask.Size()
			if ok {
				res.Addrs = append(res.Addrs, netip.PrefixFrom(ip.Unmap(), ones))
			}
		}
		routes, err := retryDump(func() ([]netlink.Route, error) { return h.RouteList(l, netlink.FAMILY_V4) })
		if err != nil {
			return fmt.Errorf("list routes of %s: %w", name, err)
		}
		for _, r := range routes {
			gw, ok := netip.AddrFromSlice(r.Gw)
			if ok && isDefault(r.Dst) && (r.Table == 0 || r.Table == unix.RT_TABLE_MAIN) {
				res.Gateway = gw.Unmap()
			}
		}
		return nil
	})
	return res, err
}

// isDefault reports whether a route's destination is the default (0.0.0.0/0 or none).
func isDefault(dst *net.IPNet) bool {
	if dst == nil {
		return true
	}
	ones, _ := dst.Mask.Size()
	return ones == 0
}

func (k *Kernel) ConfigureIface(path, name string, want Iface) error {
	return inNetns(path, func(h *netlink.Handle) error {
		l, err := linkIn(h, name)
		if err != nil {
			return err
		}
		if err := h.LinkSetName(l, want.Name); err != nil {
			return fmt.Errorf("rename %s to %s: %w", name, want.Name, err)
		}
		if err := h.LinkSetHardwareAddr(l, want.MAC); err != nil {
			return fmt.Errorf("set MAC of %s: %w", want.Name, err)
		}
		if err := h.LinkSetMTU(l, want.MTU); err != nil {
			return fmt.Errorf("set MTU of %s: %w", want.Name, err)
		}
		for _, a := range want.Addrs {
			addr := &netlink.Addr{IPNet: &net.IPNet{IP: a.Addr().AsSlice(), Mask: net.CIDRMask(a.Bits(), a.Addr().BitLen())}}
			if err := h.AddrReplace(l, addr); err != nil {
				return fmt.Errorf("add address %s to %s: %w", a, want.Name, err)
			}
		}
		if want.Up {
			if err := h.LinkSetUp(l); err != nil {
				return fmt.Errorf("set %s up: %w", want.Name, err)
			}
		}
		if want.Gateway.IsValid() {
			r := &netlink.Route{
				LinkIndex: l.Attrs().Index,
				Dst:       &net.IPNet{IP: net.IPv4zero.To4(), Mask: net.CIDRMask(0, 32)},
				Gw:        want.Gateway.AsSlice(),
			}
			if err := h.RouteReplace(r); err != nil {
				return fmt.Errorf("default route via %s on %s: %w", want.Gateway, want.Name, err)
			}
		}
		lo, err := linkIn(h, "lo")
		if err != nil {
			return err
		}
		if err := h.LinkSetUp(lo); err != nil {
			return fmt.Errorf("set lo up: %w", err)
		}
		return nil
	})
}

func (k *Kernel) Neighbors(path, dev string) ([]Neighbor, error) {
	var res []Neighbor
	err := k.inNetns(path, func(h *netlink.Handle) error {
		l, err := linkIn(h, dev)
		if err != nil {
			return err
		}
		for _, fam := range []int{unix.AF_INET, unix.AF_INET6} {
			neighs, err := retryDump(func() ([]netlink.Neigh, error) { return h.NeighList(l.Attrs().Index, fam) })
			if err != nil {
				return err
			}
			for _, n := range neighs {
				ip, ok := netip.AddrFromSlice(n.IP)
				if ok && n.State&netlink.NUD_PERMANENT != 0 {
					res = append(res, Neighbor{IP: ip.Unmap(), MAC: n.HardwareAddr})
				}
			}
		}
		return nil
	})
	return res, err
}

func neigh(h *netlink.Handle, dev string, n Neighbor) (*netlink.Neigh, error) {
	l, err := linkIn(h, dev)
	if err != nil {
		return nil, err
	}
	fam := unix.AF_INET
	if n.IP.Is6() {
		fam = unix.AF_INET6
	}
	return &netlink.Neigh{LinkIndex: l.Attrs().Index, Family: fam, State: netlink.NUD_PERMANENT, IP: n.IP.AsSlice(), HardwareAddr: n.MAC}, nil
}

func (k *Kernel) SetNeighbor(path, dev string, n Neighbor) error {
	return k.inNetns(path, func(h *netlink.Handle) error {
		nb, err := neigh(h, dev, n)
		if err != nil {
			return err
		}
		return h.NeighSet(nb)
	})
}

func (k *Kernel) DeleteNeighbor(path, dev string, n Neighbor) error {
	return k.inNetns(path, func(h *netlink.Handle) error {
		nb, err := neigh(h, dev, n)
		if err != nil {
			return err
		}
		return h.NeighDel(nb)
	})
}
