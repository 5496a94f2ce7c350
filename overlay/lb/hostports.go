package lb

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"github.com/google/nftables/userdata"
	"golang.org/x/sys/unix"
)

// HostTable holds the host-mode published ports of a node's own tasks, in the ip family.
const HostTable = "shoal_host"

const hostDigestPrefix = "shoal-host digest="

// HostPort is a port published in host mode by a task running on this node: traffic to
// Published on Addr (every local address when Addr is the zero Addr) goes to Target on
// Backend, the task's address on the node's gateway bridge. Clients keep their address:
// the task's default route is the gateway bridge, so its replies come back through this
// node's conntrack without a masquerade.
type HostPort struct {
	Protocol  string // tcp (the default when empty) or udp
	Addr      netip.Addr
	Published uint16
	Target    uint16
	Backend   netip.Addr
}

// SyncHostPorts makes table shoal_host in the network namespace at netnsPath ("" is the
// current one) DNAT ports, reached from nat prerouting and output for local destinations,
// with a masquerade only for connections from the loopback or from gwSubnet (the node's own
// tasks, whose replies would otherwise not come back through the node). It reads the digest
// the table carries and replaces the table, in one batch, only when it differs, or removes it
// when there are no ports. It reports whether the kernel's state changed.
func SyncHostPorts(netnsPath string, ports []HostPort, gwSubnet netip.Prefix) (bool, error) {
	norm, err := normalizeHostPorts(ports)
	if err != nil {
		return false, err
	}
	if len(norm) > 0 && (!gwSubnet.IsValid() || !gwSubnet.Addr().Is4()) {
		return false, fmt.Errorf("%w: gateway subnet %v is not an IPv4 prefix", ErrInvalid, gwSubnet)
	}
	want := ""
	if len(norm) > 0 {
		var b strings.Builder
		fmt.Fprintf(&b, "v1 %s\n", gwSubnet.Masked())
		for _, p := range norm {
			fmt.Fprintf(&b, "%s %v %d %d %v\n", p.Protocol, p.Addr, p.Published, p.Target, p.Backend)
		}
		sum := sha256.Sum256([]byte(b.String()))
		want = hex.EncodeToString(sum[:8])
	}
	changed := false
	err = withConn(netnsPath, func(c *nftables.Conn) error {
		present, digest, err := readDigest(c, HostTable, hostDigestPrefix)
		if err != nil {
			return err
		}
		switch {
		case want == "" && !present:
			return nil
		case want == "":
			changed = true
			return removeTable(c, HostTable)
		case present && digest == want:
			return nil
		}
		changed = true
		addHostTable(c, norm, gwSubnet.Masked(), want)
		if err := c.Flush(); err != nil {
			return fmt.Errorf("apply %s in netns %q: %w", HostTable, netnsPath, err)
		}
		return nil
	})
	return changed, err
}

func normalizeHostPorts(ports []HostPort) ([]HostPort, error) {
	out := make([]HostPort, 0, len(ports))
	for _, p := range ports {
		p.Protocol = strings.ToLower(p.Protocol)
		if p.Protocol == "" {
			p.Protocol = "tcp"
		}
		switch {
		case p.Protocol != "tcp" && p.Protocol != "udp":
			return nil, fmt.Errorf("%w: host port %d: protocol %q", ErrInvalid, p.Published, p.Protocol)
		case p.Published == 0 || p.Target == 0:
			return nil, fmt.Errorf("%w: host port %d -> %d: zero port", ErrInvalid, p.Published, p.Target)
		case p.Addr.IsValid() && !p.Addr.Is4():
			return nil, fmt.Errorf("%w: host port %d: address %v is not IPv4", ErrInvalid, p.Published, p.Addr)
		case !p.Backend.Is4():
			return nil, fmt.Errorf("%w: host port %d: backend %v is not an IPv4 address", ErrInvalid, p.Published, p.Backend)
		}
		out = append(out, p)
	}
	slices.SortFunc(out, func(a, b HostPort) int {
		if c := strings.Compare(a.Protocol, b.Protocol); c != 0 {
			return c
		}
		if c := int(a.Published) - int(b.Published); c != 0 {
			return c
		}
		return a.Addr.Compare(b.Addr)
	})
	for i := 1; i < len(out); i++ {
		a, b := out[i-1], out[i]
		if a.Protocol == b.Protocol && a.Published == b.Published && (!a.Addr.IsValid() || !b.Addr.IsValid() || a.Addr == b.Addr) {
			return nil, fmt.Errorf("%w: host port %d/%s bound twice", ErrInvalid, a.Published, a.Protocol)
		}
	}
	return out, nil
}

// addHostTable queues the replacement of shoal_host with rules for ports (normalized,
// non-empty); the prerouting rule carries digest.
func addHostTable(c *nftables.Conn, ports []HostPort, gwSubnet netip.Prefix, digest string) {
	b := replaceTable(c, HostTable)
	pub := b.c.AddChain(&nftables.Chain{Name: chainPublished, Table: b.table})
	pre := b.natChain(chainPrerouting, nftables.ChainHookPrerouting, nftables.ChainPriorityNATDest)
	out := b.natChain(chainOutput, nftables.ChainHookOutput, nftables.ChainPriorityNATDest)
	post := b.natChain(chainPostrouting, nftables.ChainHookPostrouting, nftables.ChainPriorityNATSource)
	jump := []expr.Any{
		&expr.Fib{Register: 1, FlagDADDR: true, ResultADDRTYPE: true},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binaryutil.NativeEndian.PutUint32(unix.RTN_LOCAL)},
		&expr.Verdict{Kind: expr.VerdictJump, Chain: chainPublished},
	}
	b.c.AddRule(&nftables.Rule{Table: b.table, Chain: pre, Exprs: jump, UserData: comment(hostDigestPrefix + digest)})
	b.rule(out, jump...)
	for _, p := range ports {
		b.rule(pub, append(matchPort(p.Protocol, p.Addr, p.Published),
			&expr.Immediate{Register: 1, Data: p.Backend.AsSlice()},
			&expr.Immediate{Register: 2, Data: binaryutil.BigEndian.PutUint16(p.Target)},
			&expr.NAT{Type: expr.NATTypeDestNAT, Family: unix.NFPROTO_IPV4, RegAddrMin: 1, RegProtoMin: 2},
		)...)
	}
	for _, src := range []netip.Prefix{loopback, gwSubnet} {
		b.rule(post, append(append(matchSaddr(src), matchDaddrIn(gwSubnet)...), append(ctDNATed(), &expr.Masq{})...)...)
	}
}

// readDigest reports whether table name exists and the digest its prerouting rule carries
// after prefix ("" when none).
func readDigest(c *nftables.Conn, name, prefix string) (bool, string, error) {
	tables, err := c.ListTablesOfFamily(nftables.TableFamilyIPv4)
	if err != nil {
		return false, "", fmt.Errorf("list tables: %w", err)
	}
	var table *nftables.Table
	for _, t := range tables {
		if t.Name == name {
			table = t
		}
	}
	if table == nil {
		return false, "", nil
	}
	rules, err := c.GetRules(table, &nftables.Chain{Name: chainPrerouting, Table: table})
	if err != nil {
		return true, "", fmt.Errorf("rules of %s/%s: %w", name, chainPrerouting, err)
	}
	for _, r := range rules {
		if s, ok := userdata.GetString(r.UserData, userdata.TypeComment); ok && strings.HasPrefix(s, prefix) {
			return true, strings.TrimPrefix(s, prefix), nil
		}
	}
	return true, "", nil
}
