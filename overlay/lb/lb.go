package lb

import (
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"slices"
	"strings"

	"github.com/google/nftables"
	"github.com/vishvananda/netns"
)

// Table names, both in the ip (IPv4) family.
const (
	TaskTable    = "shoal_lb"
	IngressTable = "shoal_ingress"
)

// ErrInvalid reports desired state that cannot be turned into rules.
var ErrInvalid = errors.New("lb: invalid")

// VIP is one service virtual IP a task can reach and the addresses of the service's running
// tasks on the same network. A VIP without backends rejects connections (ICMP port
// unreachable, so a TCP connect fails at once with ECONNREFUSED instead of timing out).
type VIP struct {
	Addr     netip.Addr
	Backends []netip.Addr
}

// PublishedPort is one port published on every node (ingress mode): traffic to any local
// address of the node on Published goes to Target on one of Backends (task IPs on the
// ingress network). Protocol is "tcp" (the default when empty) or "udp". A port without
// backends rejects connections like a VIP without backends.
type PublishedPort struct {
	Protocol  string
	Published uint16
	Target    uint16
	Backends  []netip.Addr
	// Addr, when valid, is the one local address the port is bound on; the zero Addr is
	// every local address.
	Addr netip.Addr
}

// ApplyTaskRules replaces table shoal_lb in the network namespace at netnsPath with one rule
// per VIP: `ip daddr VIP dnat to numgen inc mod N map { 0 : IP1, ... }` (all protocols and
// ports) in a nat output chain. The old table is deleted and the new one added in one netlink
// batch, so the namespace never sees a half state. No VIPs removes the table.
func ApplyTaskRules(netnsPath string, vips []VIP) error {
	if netnsPath == "" {
		return fmt.Errorf("%w: task netns path is empty", ErrInvalid)
	}
	norm, err := normalizeVIPs(vips)
	if err != nil {
		return err
	}
	return withConn(netnsPath, func(c *nftables.Conn) error {
		if len(norm) == 0 {
			return removeTable(c, TaskTable)
		}
		if err := addTaskTable(c, norm); err != nil {
			return err
		}
		if err := c.Flush(); err != nil {
			return fmt.Errorf("apply %s in %s: %w", TaskTable, netnsPath, err)
		}
		return nil
	})
}

// RemoveTaskRules deletes table shoal_lb from the network namespace at netnsPath. A missing
// table or a namespace that no longer exists is not an error.
func RemoveTaskRules(netnsPath string) error {
	if netnsPath == "" {
		return fmt.Errorf("%w: task netns path is empty", ErrInvalid)
	}
	err := withConn(netnsPath, func(c *nftables.Conn) error { return removeTable(c, TaskTable) })
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	return err
}

// ApplyIngress replaces table shoal_ingress in the network namespace at netnsPath ("" is the
// calling thread's, i.e. the node's own) with DNAT rules for ports, reached from nat
// prerouting (traffic from outside) and nat output (locally originated) for any local
// destination address, and a nat postrouting rule that masquerades DNATed connections into
// ingressSubnet so that replies come back through this node. No ports removes the table.
//
// The rules (chain published, jumped to from prerouting and output on `fib daddr type
// local`): `tcp dport P dnat ip to numgen inc mod N map { 0 : IP1 . TARGET, ... }`, one map
// of address and port per published port, so the port is rewritten by the same lookup. The
// node reaches its own published ports on 127.0.0.1 only if the ingress link has
// net.ipv4.conf.LINK.route_localnet=1 (as Docker sets on docker_gwbridge); the caller that
// owns that link sets it.
func ApplyIngress(netnsPath string, ports []PublishedPort, ingressSubnet netip.Prefix) error {
	norm, err := normalizePorts(ports)
	if err != nil {
		return err
	}
	if len(norm) > 0 && (!ingressSubnet.IsValid() || !ingressSubnet.Addr().Is4()) {
		return fmt.Errorf("%w: ingress subnet %v is not an IPv4 prefix", ErrInvalid, ingressSubnet)
	}
	return withConn(netnsPath, func(c *nftables.Conn) error {
		if len(norm) == 0 {
			return removeTable(c, IngressTable)
		}
		if err := addIngressTable(c, norm, ingressSubnet.Masked(), digestOf(norm, ingressSubnet)); err != nil {
			return err
		}
		if err := c.Flush(); err != nil {
			return fmt.Errorf("apply %s in netns %q: %w", IngressTable, netnsPath, err)
		}
		return nil
	})
}

// RemoveIngress deletes table shoal_ingress from the network namespace at netnsPath ("" is
// the current one). A missing table is not an error.
func RemoveIngress(netnsPath string) error {
	return withConn(netnsPath, func(c *nftables.Conn) error { return removeTable(c, IngressTable) })
}

// ListRules counts the rules in Shoal's tables (shoal_lb, shoal_ingress, shoal_gw, shoal_host, shoal_mesh) in the network
// namespace at netnsPath ("" is the current one), for leak checks.
func ListRules(netnsPath string) (int, error) {
	n := 0
	err := withConn(netnsPath, func(c *nftables.Conn) error {
		tables, err := c.ListTablesOfFamily(nftables.TableFamilyIPv4)
		if err != nil {
			return fmt.Errorf("list tables: %w", err)
		}
		ours := map[string]*nftables.Table{}
		for _, t := range tables {
			if t.Name == TaskTable || t.Name == IngressTable || t.Name == GatewayTable || t.Name == HostTable || t.Name == MeshTable {
				ours[t.Name] = t
			}
		}
		if len(ours) == 0 {
			return nil
		}
		chains, err := c.ListChainsOfTableFamily(nftables.TableFamilyIPv4)
		if err != nil {
			return fmt.Errorf("list chains: %w", err)
		}
		for _, ch := range chains {
			t, ok := ours[ch.Table.Name]
			if !ok {
				continue
			}
			rules, err := c.GetRules(t, ch)
			if err != nil {
				return fmt.Errorf("list rules of %s/%s: %w", t.Name, ch.Name, err)
			}
			n += len(rules)
		}
		return nil
	})
	return n, err
}

// withConn runs fn with an nftables connection whose netlink socket lives in the network
// namespace at netnsPath, or in the calling thread's namespace when netnsPath is "".
func withConn(netnsPath string, fn func(*nftables.Conn) error) error {
	if netnsPath == "" {
		c, err := nftables.New(nftables.AsLasting())
		if err != nil {
			return fmt.Errorf("nftables: %w", err)
		}
		defer c.CloseLasting()
		return fn(c)
	}
	h, err := netns.GetFromPath(netnsPath)
	if err != nil {
		return fmt.Errorf("open netns %s: %w", netnsPath, err)
	}
	defer h.Close()
	c, err := nftables.New(nftables.WithNetNSFd(int(h)), nftables.AsLasting())
	if err != nil {
		return fmt.Errorf("nftables in %s: %w", netnsPath, err)
	}
	defer c.CloseLasting()
	return fn(c)
}

// removeTable deletes table name; adding it first in the same batch makes the delete succeed
// whether or not the table exists.
func removeTable(c *nftables.Conn, name string) error {
	t := &nftables.Table{Name: name, Family: nftables.TableFamilyIPv4}
	c.AddTable(t)
	c.DelTable(t)
	if err := c.Flush(); err != nil {
		return fmt.Errorf("remove table %s: %w", name, err)
	}
	return nil
}

// normalizeVIPs checks vips and returns them sorted by address with sorted, de-duplicated
// backends, so that equal desired states produce equal rule sets.
func normalizeVIPs(vips []VIP) ([]VIP, error) {
	out := make([]VIP, 0, len(vips))
	seen := map[netip.Addr]bool{}
	for _, v := range vips {
		if !v.Addr.Is4() {
			return nil, fmt.Errorf("%w: vip %v is not an IPv4 address", ErrInvalid, v.Addr)
		}
		if seen[v.Addr] {
			return nil, fmt.Errorf("%w: vip %v listed twice", ErrInvalid, v.Addr)
		}
		seen[v.Addr] = true
		b, err := normalizeBackends(v.Backends)
		if err != nil {
			return nil, fmt.Errorf("vip %v: %w", v.Addr, err)
		}
		out = append(out, VIP{Addr: v.Addr, Backends: b})
	}
	slices.SortFunc(out, func(a, b VIP) int { return a.Addr.Compare(b.Addr) })
	return out, nil
}

func normalizePorts(ports []PublishedPort) ([]PublishedPort, error) {
	out := make([]PublishedPort, 0, len(ports))
	type key struct {
		proto string
		port  uint16
		addr  netip.Addr
	}
	seen := map[key]bool{}
	for _, p := range ports {
		proto := strings.ToLower(p.Protocol)
		if proto == "" {
			proto = "tcp"
		}
		if proto != "tcp" && proto != "udp" {
			return nil, fmt.Errorf("%w: published port %d: protocol %q", ErrInvalid, p.Published, p.Protocol)
		}
		if p.Published == 0 || p.Target == 0 {
			return nil, fmt.Errorf("%w: published port %d -> %d: zero port", ErrInvalid, p.Published, p.Target)
		}
		if p.Addr.IsValid() && !p.Addr.Is4() {
			return nil, fmt.Errorf("%w: published port %d/%s: address %v is not IPv4", ErrInvalid, p.Published, proto, p.Addr)
		}
		k := key{proto, p.Published, p.Addr}
		if seen[k] {
			return nil, fmt.Errorf("%w: published port %d/%s listed twice", ErrInvalid, p.Published, proto)
		}
		seen[k] = true
		b, err := normalizeBackends(p.Backends)
		if err != nil {
			return nil, fmt.Errorf("published port %d/%s: %w", p.Published, proto, err)
		}
		out = append(out, PublishedPort{Protocol: proto, Published: p.Published, Target: p.Target, Backends: b, Addr: p.Addr})
	}
	slices.SortFunc(out, func(a, b PublishedPort) int {
		if c := strings.Compare(a.Protocol, b.Protocol); c != 0 {
			return c
		}
		if c := int(a.Published) - int(b.Published); c != 0 {
			return c
		}
		return a.Addr.Compare(b.Addr)
	})
	return out, nil
}

func normalizeBackends(in []netip.Addr) ([]netip.Addr, error) {
	out := make([]netip.Addr, 0, len(in))
	for _, a := range in {
		if !a.Is4() {
			return nil, fmt.Errorf("%w: backend %v is not an IPv4 address", ErrInvalid, a)
		}
		out = append(out, a)
	}
	slices.SortFunc(out, netip.Addr.Compare)
	return slices.Compact(out), nil
}
