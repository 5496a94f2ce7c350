package lb

import (
	"fmt"
	"net/netip"
	"strings"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// Chain names.
const (
	chainOutput      = "output"
	chainPrerouting  = "prerouting"
	chainPostrouting = "postrouting"
	// chainPublished holds the per-port DNAT rules of shoal_ingress; prerouting and output
	// jump to it for local destinations (Docker's DOCKER-INGRESS), so both paths share one
	// rule, one map and one round-robin counter per port.
	chainPublished = "published"
)

// ipDNATData is the data type of the ingress maps: an IPv4 address and a port, each padded
// to a 4-byte register, so that one lookup loads the address into register 1 and the port
// into the next 32-bit register (NFT_REG32_01 = 9), as `dnat ip to numgen ... map { 0 : IP .
// PORT }` does in nft.
var ipDNATData = nftables.MustConcatSetType(nftables.TypeIPAddr, nftables.TypeInetService)

const (
	regPort         = 9    // NFT_REG32_01: bytes 4..7 of register 1
	ipsDstNAT       = 0x20 // IPS_DST_NAT in ct status
	icmpPortUnreach = 3    // ICMP_PORT_UNREACH
)

// batch carries the per-batch state: set IDs must be unique within one batch, and are
// assigned here rather than by the library's package-global counter (racy across Conns).
type batch struct {
	c      *nftables.Conn
	table  *nftables.Table
	nextID uint32
}

// replaceTable queues "add table; delete table; add table" so that the whole batch replaces
// the table, whether or not it existed.
func replaceTable(c *nftables.Conn, name string) *batch {
	t := &nftables.Table{Name: name, Family: nftables.TableFamilyIPv4}
	c.AddTable(t)
	c.DelTable(t)
	c.AddTable(t)
	return &batch{c: c, table: t}
}

func (b *batch) natChain(name string, hook *nftables.ChainHook, prio *nftables.ChainPriority) *nftables.Chain {
	accept := nftables.ChainPolicyAccept
	return b.c.AddChain(&nftables.Chain{
		Name: name, Table: b.table, Type: nftables.ChainTypeNAT,
		Hooknum: hook, Priority: prio, Policy: &accept,
	})
}

func (b *batch) rule(ch *nftables.Chain, exprs ...expr.Any) {
	b.c.AddRule(&nftables.Rule{Table: b.table, Chain: ch, Exprs: exprs})
}

// numgenMap queues map name: 0..n-1 -> vals[i], and returns the expressions `numgen inc mod
// n` and a lookup of it into register 1. The map is named rather than anonymous only because
// google/nftables marks anonymous sets' keys big-endian, which makes `nft list` print the
// host-endian numgen keys wrongly (1 as 16777216); the kernel treats both the same.
func (b *batch) numgenMap(name string, dataType nftables.SetDatatype, vals [][]byte) ([]expr.Any, error) {
	b.nextID++
	set := &nftables.Set{
		Table: b.table, ID: b.nextID, Name: name, IsMap: true,
		KeyType: nftables.TypeInteger, KeyByteOrder: binaryutil.NativeEndian, DataType: dataType,
	}
	elems := make([]nftables.SetElement, len(vals))
	for i, v := range vals {
		elems[i] = nftables.SetElement{Key: binaryutil.NativeEndian.PutUint32(uint32(i)), Val: v}
	}
	if err := b.c.AddSet(set, elems); err != nil {
		return nil, fmt.Errorf("add map %s: %w", name, err)
	}
	return []expr.Any{
		&expr.Numgen{Register: 1, Modulus: uint32(len(vals)), Type: unix.NFT_NG_INCREMENTAL},
		&expr.Lookup{SourceRegister: 1, DestRegister: 1, IsDestRegSet: true, SetName: set.Name, SetID: set.ID},
	}, nil
}

// addTaskTable queues the replacement of shoal_lb with rules for vips (normalized, non-empty).
func addTaskTable(c *nftables.Conn, vips []VIP) error {
	b := replaceTable(c, TaskTable)
	out := b.natChain(chainOutput, nftables.ChainHookOutput, nftables.ChainPriorityNATDest)
	for _, v := range vips {
		match := matchDaddr(v.Addr)
		switch len(v.Backends) {
		case 0:
			b.rule(out, append(match, reject())...)
		case 1:
			b.rule(out, append(match,
				&expr.Immediate{Register: 1, Data: v.Backends[0].AsSlice()},
				dnat(false))...)
		default:
			vals := make([][]byte, len(v.Backends))
			for i, a := range v.Backends {
				vals[i] = a.AsSlice()
			}
			pick, err := b.numgenMap("vip_"+strings.ReplaceAll(v.Addr.String(), ".", "_"), nftables.TypeIPAddr, vals)
			if err != nil {
				return fmt.Errorf("vip %v: %w", v.Addr, err)
			}
			b.rule(out, append(append(match, pick...), dnat(false))...)
		}
	}
	return nil
}

// addIngressTable queues the replacement of shoal_ingress with rules for ports (normalized,
// non-empty) and the masquerade into subnet; the prerouting rule carries digest.
func addIngressTable(c *nftables.Conn, ports []PublishedPort, subnet netip.Prefix, digest string) error {
	b := replaceTable(c, IngressTable)
	pub := b.c.AddChain(&nftables.Chain{Name: chainPublished, Table: b.table})
	pre := b.natChain(chainPrerouting, nftables.ChainHookPrerouting, nftables.ChainPriorityNATDest)
	out := b.natChain(chainOutput, nftables.ChainHookOutput, nftables.ChainPriorityNATDest)
	post := b.natChain(chainPostrouting, nftables.ChainHookPostrouting, nftables.ChainPriorityNATSource)

	// fib daddr type local jump published
	jump := []expr.Any{
		&expr.Fib{Register: 1, FlagDADDR: true, ResultADDRTYPE: true},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binaryutil.NativeEndian.PutUint32(unix.RTN_LOCAL)},
		&expr.Verdict{Kind: expr.VerdictJump, Chain: chainPublished},
	}
	b.c.AddRule(&nftables.Rule{Table: b.table, Chain: pre, Exprs: jump, UserData: comment(digestPrefix + digest)})
	b.rule(out, jump...)

	for _, p := range ports {
		match := matchPort(p.Protocol, p.Addr, p.Published)
		if len(p.Backends) == 0 {
			b.rule(pub, append(match, reject())...)
			continue
		}
		vals := make([][]byte, len(p.Backends))
		for i, a := range p.Backends {
			v := append(a.AsSlice(), binaryutil.BigEndian.PutUint16(p.Target)...)
			vals[i] = append(v, 0, 0) // pad the port to its 4-byte register
		}
		name := fmt.Sprintf("port_%s_%d", p.Protocol, p.Published)
		if p.Addr.IsValid() {
			name += "_" + strings.ReplaceAll(p.Addr.String(), ".", "_")
		}
		pick, err := b.numgenMap(name, ipDNATData, vals)
		if err != nil {
			return fmt.Errorf("published port %d/%s: %w", p.Published, p.Protocol, err)
		}
		b.rule(pub, append(append(match, pick...), dnat(true))...)
	}

	// ip saddr 127.0.0.0/8 ip daddr SUBNET ct status dnat masquerade: only connections from
	// the node's loopback (route_localnet) that this table redirected into the ingress
	// network. Every other client keeps its address: the backend's namespace routes its
	// replies back to the node they came through (MeshReplyRules), so they still pass this
	// node's conntrack and are un-DNATed here.
	b.rule(post, append(append(matchSaddr(loopback), matchDaddrIn(subnet)...), append(ctDNATed(), &expr.Masq{})...)...)
	return nil
}

var loopback = netip.MustParsePrefix("127.0.0.0/8")

// matchPort is `meta l4proto PROTO [ip daddr ADDR] th dport PORT`.
func matchPort(proto string, addr netip.Addr, port uint16) []expr.Any {
	p := byte(unix.IPPROTO_TCP)
	if proto == "udp" {
		p = unix.IPPROTO_UDP
	}
	m := []expr.Any{
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{p}},
	}
	if addr.IsValid() {
		m = append(m, matchDaddr(addr)...)
	}
	return append(m,
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binaryutil.BigEndian.PutUint16(port)},
	)
}

// matchSaddr is `ip saddr PREFIX`.
func matchSaddr(p netip.Prefix) []expr.Any { return matchPrefix(12, p) }

// matchDaddrIn is `ip daddr PREFIX`.
func matchDaddrIn(p netip.Prefix) []expr.Any { return matchPrefix(16, p) }

func matchPrefix(offset uint32, p netip.Prefix) []expr.Any {
	return []expr.Any{
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: offset, Len: 4},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: netipMask(p.Bits()), Xor: []byte{0, 0, 0, 0}},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: p.Masked().Addr().AsSlice()},
	}
}

// ctDNATed is `ct status dnat`.
func ctDNATed() []expr.Any {
	return []expr.Any{
		&expr.Ct{Register: 1, Key: expr.CtKeySTATUS},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4,
			Mask: binaryutil.NativeEndian.PutUint32(ipsDstNAT), Xor: []byte{0, 0, 0, 0}},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: []byte{0, 0, 0, 0}},
	}
}

// matchDaddr is `ip daddr a`.
func matchDaddr(a netip.Addr) []expr.Any {
	return []expr.Any{
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 16, Len: 4},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: a.AsSlice()},
	}
}

// dnat is `dnat to <register 1>`, with the port from register 9 when withPort.
func dnat(withPort bool) expr.Any {
	n := &expr.NAT{Type: expr.NATTypeDestNAT, Family: unix.NFPROTO_IPV4, RegAddrMin: 1}
	if withPort {
		n.RegProtoMin = regPort // the kernel adds NF_NAT_RANGE_PROTO_SPECIFIED itself
	}
	return n
}

// reject is nft's plain `reject` in the ip family: ICMP port unreachable.
func reject() expr.Any {
	return &expr.Reject{Type: unix.NFT_REJECT_ICMP_UNREACH, Code: icmpPortUnreach}
}

func netipMask(bits int) []byte {
	m := make([]byte, 4)
	for i := range m {
		switch {
		case bits >= 8:
			m[i] = 0xff
			bits -= 8
		case bits > 0:
			m[i] = byte(0xff << (8 - bits))
			bits = 0
		}
	}
	return m
}
