package allocator

import (
	"errors"
	"fmt"
	"net/netip"

	"github.com/shoal-dev/shoal/api"
)

var (
	// ErrPoolExhausted: the default pool has no free subnet left.
	ErrPoolExhausted = errors.New("allocator: default address pool exhausted")
	// ErrVNIExhausted: every VXLAN network identifier is taken.
	ErrVNIExhausted = errors.New("allocator: no free VNI")
	// ErrNoAddress: a network's subnet has no free address left.
	ErrNoAddress = errors.New("allocator: no free address")
	// ErrBadSubnet: a subnet the caller gave cannot be used.
	ErrBadSubnet = errors.New("allocator: bad subnet")
)

const (
	// IngressName is the name of the ingress network made on first need.
	IngressName = "ingress"
	// IngressVNI is the ingress network's VNI; user networks start above it.
	IngressVNI uint32 = 4096
	// FirstVNI is the first VNI given to other networks.
	FirstVNI uint32 = 4097
	// MaxVNI is the largest 24-bit VNI.
	MaxVNI uint32 = 1<<24 - 1
	// DefaultSubnetBits is the prefix length of subnets cut from DefaultPool.
	DefaultSubnetBits = 24
	// MaxSubnetBits is the longest prefix accepted: a /29 holds 5 tasks
	// besides the network, gateway and broadcast addresses.
	MaxSubnetBits = 29
)

var (
	// DefaultPool is where subnets come from when a network names none.
	DefaultPool = netip.MustParsePrefix("10.10.0.0/16")
	// IngressSubnet is the ingress network's subnet; it is kept free for it
	// while no ingress network exists.
	IngressSubnet = netip.MustParsePrefix("10.255.0.0/16")
)

// OverlapError says a subnet overlaps the subnet of an existing network.
type OverlapError struct {
	Subnet  netip.Prefix
	Network string // name of the other network
	Other   netip.Prefix
}

func (e *OverlapError) Error() string {
	return fmt.Sprintf("subnet %s overlaps network %s (%s)", e.Subnet, e.Network, e.Other)
}

// ParseSubnet reads a user's subnet: an IPv4 CIDR without host bits, no
// longer than /29. Errors wrap ErrBadSubnet.
func ParseSubnet(s string) (netip.Prefix, error) {
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("%w: %q: want a CIDR like 10.0.1.0/24", ErrBadSubnet, s)
	}
	if !p.Addr().Is4() {
		return netip.Prefix{}, fmt.Errorf("%w: %s: only IPv4 subnets are supported", ErrBadSubnet, s)
	}
	if p.Bits() > MaxSubnetBits {
		return netip.Prefix{}, fmt.Errorf("%w: subnet too small: %s: want /%d or larger", ErrBadSubnet, s, MaxSubnetBits)
	}
	if p.Masked() != p {
		return netip.Prefix{}, fmt.Errorf("%w: %s has host bits set: want %s", ErrBadSubnet, s, p.Masked())
	}
	return p, nil
}

// Overlaps reports whether two prefixes share an address.
func Overlaps(a, b netip.Prefix) bool { return a.Overlaps(b) }

// IngressSpec is the spec of the ingress network made on first need.
func IngressSpec() api.NetworkSpec {
	return api.NetworkSpec{Name: IngressName, Subnet: IngressSubnet.String(), Ingress: true}
}

// NewNetwork completes spec into a network with ID id, next to the existing
// networks: the subnet given (it must not overlap another network's, nor
// IngressSubnet while no ingress network exists) or the first free /24 of
// DefaultPool, the first free VNI from FirstVNI (IngressVNI for an ingress
// network when free), and the subnet's first address as gateway. It is a
// pure function of its arguments.
func NewNetwork(id string, spec api.NetworkSpec, existing []*api.Network) (*api.Network, error) {
	type taken struct {
		name   string
		subnet netip.Prefix
	}
	var subnets []taken
	vnis := make(map[uint32]bool, len(existing))
	haveIngress := false
	for _, n := range existing {
		vnis[n.VNI] = true
		haveIngress = haveIngress || n.Spec.Ingress
		if p, err := netip.ParsePrefix(n.Spec.Subnet); err == nil {
			subnets = append(subnets, taken{n.Spec.Name, p.Masked()})
		}
	}
	if !haveIngress && !spec.Ingress {
		subnets = append(subnets, taken{IngressName + " (reserved)", IngressSubnet})
	}
	overlap := func(p netip.Prefix) *OverlapError {
		for _, t := range subnets {
			if p.Overlaps(t.subnet) {
				return &OverlapError{Subnet: p, Network: t.name, Other: t.subnet}
			}
		}
		return nil
	}

	var subnet netip.Prefix
	switch {
	case spec.Subnet != "":
		p, err := ParseSubnet(spec.Subnet)
		if err != nil {
			return nil, err
		}
		if oe := overlap(p); oe != nil {
			return nil, oe
		}
		subnet = p
	case spec.Ingress:
		if oe := overlap(IngressSubnet); oe != nil {
			return nil, oe
		}
		subnet = IngressSubnet
	default:
		found := false
		first := netip.PrefixFrom(DefaultPool.Addr(), DefaultSubnetBits)
		for p := first; p.IsValid() && DefaultPool.Contains(p.Addr()); p = nextPrefix(p) {
			if overlap(p) == nil {
				subnet, found = p, true
				break
			}
		}
		if !found {
			return nil, fmt.Errorf("%w (%s in /%ds): give a subnet", ErrPoolExhausted, DefaultPool, DefaultSubnetBits)
		}
	}

	var vni uint32
	if spec.Ingress && !vnis[IngressVNI] {
		vni = IngressVNI
	} else {
		for v := FirstVNI; v <= MaxVNI; v++ {
			if !vnis[v] {
				vni = v
				break
			}
		}
		if vni == 0 {
			return nil, ErrVNIExhausted
		}
	}

	spec.Subnet = subnet.String()
	return &api.Network{ID: id, Spec: spec, VNI: vni, Gateway: subnet.Addr().Next().String()}, nil
}

// nextPrefix is the prefix of the same length right after p; invalid past
// the end of the address space.
func nextPrefix(p netip.Prefix) netip.Prefix {
	last := lastAddr(p)
	next := last.Next()
	if !next.IsValid() {
		return netip.Prefix{}
	}
	return netip.PrefixFrom(next, p.Bits())
}

// lastAddr is the broadcast address of an IPv4 prefix.
func lastAddr(p netip.Prefix) netip.Addr {
	b := p.Masked().Addr().As4()
	host := uint32(1)<<(32-p.Bits()) - 1
	v := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
	v |= host
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}
