package lb

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/shoal-dev/shoal/overlay"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// The routing mesh keeps the client's address: a node DNATs a published port to a task's
// ingress address without masquerading, so the task sees the client. Its replies must then
// go back through the node that DNATed the connection (which may be another node than the
// task's: the reply is un-DNATed by that node's conntrack), not out of the task's default
// route. The task's namespace remembers, per connection, which node sent it: the node's
// ingress bridge has the MAC 02:42 + its ingress address (overlay.MACFor), so the four last
// bytes of the source MAC of the connection's first packet are that node's ingress address.
// Table shoal_mesh stores them as the connection mark and sets it as the packet mark of the
// replies; one ip rule per node (mark = the node's ingress address) sends them to a routing
// table (the same number) whose default route is that node's ingress address on the
// ingress link.

// MeshTable is the table that marks connections by the node they came through, in a task
// namespace on the ingress network.
const MeshTable = "shoal_mesh"

// meshRulePriority is the priority of the ip rules ApplyMeshReply owns: before the main table
// (32766), after local (0).
const meshRulePriority = 9000

const ctStateNew = 8 // NF_CT_STATE_BIT(IP_CT_NEW)

// ApplyMeshReply makes the network namespace at netnsPath (a task's, attached to the ingress
// network through link ifname) send the replies of connections that came in on ifname from
// one of nodes (ingress addresses) back to that node: table shoal_mesh and one ip rule and
// routing table per node. No nodes removes both.
func ApplyMeshReply(netnsPath, ifname string, nodes []netip.Addr) error {
	if netnsPath == "" {
		return fmt.Errorf("%w: task netns path is empty", ErrInvalid)
	}
	if ifname == "" || len(ifname) >= ifnamsiz {
		return fmt.Errorf("%w: ingress link name %q", ErrInvalid, ifname)
	}
	want := make([]netip.Addr, 0, len(nodes))
	for _, a := range nodes {
		if !a.Is4() || a.IsUnspecified() {
			return fmt.Errorf("%w: node ingress address %v is not an IPv4 address", ErrInvalid, a)
		}
		want = append(want, a)
	}
	slices.SortFunc(want, netip.Addr.Compare)
	want = slices.Compact(want)
	err := withConn(netnsPath, func(c *nftables.Conn) error {
		if len(want) == 0 {
			return removeTable(c, MeshTable)
		}
		addMeshTable(c, ifname)
		if err := c.Flush(); err != nil {
			return fmt.Errorf("apply %s in %s: %w", MeshTable, netnsPath, err)
		}
		return nil
	})
	if err != nil {
		return err
	}
	if len(want) > 0 {
		if err := looseRPFilter(netnsPath, ifname); err != nil {
			return err
		}
	}
	return syncMeshRoutes(netnsPath, ifname, want)
}

// looseRPFilter makes the reverse-path filter on ifname in the namespace at netnsPath loose
// (2) at most: a request from a client outside the ingress subnet comes in by ifname, while
// the main table's route back to the client is the task's gateway link, so a strict filter
// (1, which some distributions set as the default new namespaces inherit) would drop it. The
// effective mode is the larger of conf/all and conf/IF, so a strict conf/all is made loose too.
func looseRPFilter(netnsPath, ifname string) error {
	return overlay.InNetns(netnsPath, func() error {
		for _, conf := range []string{ifname, "all"} {
			path := filepath.Join("/proc/sys/net/ipv4/conf", conf, "rp_filter")
			b, err := os.ReadFile(path)
			if err != nil {
				return fmt.Errorf("read %s: %w", path, err)
			}
			if v := strings.TrimSpace(string(b)); v == "0" || v == "2" {
				continue
			}
			if err := os.WriteFile(path, []byte("2"), 0o644); err != nil {
				return fmt.Errorf("write %s: %w", path, err)
			}
		}
		return nil
	})
}

// addMeshTable queues the replacement of shoal_mesh:
//
//	chain prerouting { type filter hook prerouting priority mangle;
//	        iifname IF ct state new ct mark set @ll,64,32 }
//	chain output { type route hook output priority mangle; meta mark set ct mark }
func addMeshTable(c *nftables.Conn, ifname string) {
	b := replaceTable(c, MeshTable)
	accept := nftables.ChainPolicyAccept
	pre := c.AddChain(&nftables.Chain{Name: chainPrerouting, Table: b.table, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookPrerouting, Priority: nftables.ChainPriorityMangle, Policy: &accept})
	out := c.AddChain(&nftables.Chain{Name: chainOutput, Table: b.table, Type: nftables.ChainTypeRoute,
		Hooknum: nftables.ChainHookOutput, Priority: nftables.ChainPriorityMangle, Policy: &accept})
	name := make([]byte, ifnamsiz)
	copy(name, ifname)
	b.rule(pre,
		&expr.Meta{Key: expr.MetaKeyIIFNAME, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: name},
		&expr.Ct{Register: 1, Key: expr.CtKeySTATE},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: nativeU32(ctStateNew), Xor: []byte{0, 0, 0, 0}},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: []byte{0, 0, 0, 0}},
		// The source MAC is bytes 6..11 of the link-layer header; 8..11 are the address.
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseLLHeader, Offset: 8, Len: 4},
		&expr.Ct{Register: 1, SourceRegister: true, Key: expr.CtKeyMARK},
	)
	b.rule(out,
		&expr.Ct{Register: 1, Key: expr.CtKeyMARK},
		&expr.Meta{Key: expr.MetaKeyMARK, SourceRegister: true, Register: 1},
	)
}

func nativeU32(v uint32) []byte {
	b := make([]byte, 4)
	binary.NativeEndian.PutUint32(b, v)
	return b
}

// meshMark is the mark (and routing table) of node a: its address as a number, read the way
// the kernel reads the four MAC bytes copied into the 32-bit mark (host byte order).
func meshMark(a netip.Addr) uint32 {
	b := a.As4()
	return binary.NativeEndian.Uint32(b[:])
}

// syncMeshRoutes keeps one ip rule (fwmark M lookup M) and one routing table M (default via
// the node's address dev ifname) per node in want, and removes the rules of nodes gone.
func syncMeshRoutes(netnsPath, ifname string, want []netip.Addr) error {
	ns, err := netns.GetFromPath(netnsPath)
	if err != nil {
		return fmt.Errorf("open netns %s: %w", netnsPath, err)
	}
	defer ns.Close()
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		return fmt.Errorf("netlink in %s: %w", netnsPath, err)
	}
	defer h.Close()
	marks := map[uint32]netip.Addr{}
	for _, a := range want {
		marks[meshMark(a)] = a
	}
	rules, err := h.RuleList(unix.AF_INET)
	if err != nil {
		return fmt.Errorf("list ip rules in %s: %w", netnsPath, err)
	}
	var errs []error
	have := map[uint32]bool{}
	for _, r := range rules {
		if r.Priority != meshRulePriority {
			continue
		}
		if _, ok := marks[r.Mark]; ok && uint32(r.Table) == r.Mark && !have[r.Mark] {
			have[r.Mark] = true
			continue
		}
		r := r
		if err := h.RuleDel(&r); err != nil && !errors.Is(err, unix.ENOENT) {
			errs = append(errs, fmt.Errorf("delete ip rule fwmark %#x: %w", r.Mark, err))
		}
		if r.Table > 255 {
			_ = h.RouteDel(&netlink.Route{Table: r.Table, Dst: defaultDst()})
		}
	}
	if len(want) == 0 {
		return errors.Join(errs...)
	}
	link, err := h.LinkByName(ifname)
	if err != nil {
		return errors.Join(append(errs, fmt.Errorf("ingress link %s in %s: %w", ifname, netnsPath, err))...)
	}
	mask := uint32(0xffffffff)
	for _, a := range want {
		m := meshMark(a)
		route := &netlink.Route{Table: int(m), Dst: defaultDst(), Gw: net.IP(a.AsSlice()), LinkIndex: link.Attrs().Index}
		if err := h.RouteReplace(route); err != nil {
			errs = append(errs, fmt.Errorf("route table %d: default via %s dev %s: %w", m, a, ifname, err))
			continue
		}
		if have[m] {
			continue
		}
		r := netlink.NewRule()
		r.Family, r.Priority, r.Mark, r.Mask, r.Table = unix.AF_INET, meshRulePriority, m, &mask, int(m)
		if err := h.RuleAdd(r); err != nil {
			errs = append(errs, fmt.Errorf("add ip rule fwmark %#x lookup %d: %w", m, m, err))
		}
	}
	return errors.Join(errs...)
}

func defaultDst() *net.IPNet { return &net.IPNet{IP: net.IPv4zero.To4(), Mask: net.CIDRMask(0, 32)} }
