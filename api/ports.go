package api

import (
	"fmt"
	"net"
	"net/netip"
	"strconv"
)

// Shoal's own ports, Swarm's: 2377/tcp API, 2378/tcp raft, 7946/tcp+udp
// gossip, 4789/udp VXLAN. Nodes may be started on other API, raft, gossip
// and metrics ports; their Endpoints say which.
const (
	DefaultAPIPort    = 2377
	DefaultRaftPort   = 2378
	DefaultGossipPort = 7946
	VXLANPort         = 4789
)

// OwnPorts names the ports Shoal itself uses: the defaults and every port in
// endpoints. A published port DNATs that port on every local address of
// every node, so publishing one of these would hand Shoal's own traffic to a
// task (-p 2377:80 took a whole cluster down). They are refused for both
// protocols: gossip uses both, and one rule is easier to explain than four.
func OwnPorts(endpoints ...Endpoints) map[uint16]string {
	own := map[uint16]string{
		DefaultAPIPort:    "the API port",
		DefaultRaftPort:   "the raft port",
		DefaultGossipPort: "the gossip port",
		VXLANPort:         "the VXLAN port",
	}
	for _, e := range endpoints {
		for _, p := range []struct{ addr, what string }{
			{e.API, "an API port"}, {e.Raft, "a raft port"}, {e.Gossip, "a gossip port"}, {e.Metrics, "a metrics port"},
		} {
			if _, port, err := net.SplitHostPort(p.addr); err == nil {
				if n, err := strconv.ParseUint(port, 10, 16); err == nil && n != 0 {
					if _, ok := own[uint16(n)]; !ok {
						own[uint16(n)] = fmt.Sprintf("%s (%s)", p.what, p.addr)
					}
				}
			}
		}
	}
	return own
}

// PublishMode is where a published port is bound.
type PublishMode string

const (
	// PublishIngress binds the port on every node (the routing mesh): a
	// connection to any node goes to one of the service's running tasks.
	PublishIngress PublishMode = "ingress"
	// PublishHost binds the port only on the node that runs a task, to
	// that task; two tasks needing the same host port never share a node.
	PublishHost PublishMode = "host"
)

// Mode is the port's publish mode, ingress when unset.
func (p PortConfig) Mode() PublishMode {
	if p.PublishMode == "" {
		return PublishIngress
	}
	return p.PublishMode
}

// Proto is the port's protocol, tcp when unset.
func (p PortConfig) Proto() string {
	if p.Protocol == "" {
		return ProtocolTCP
	}
	return p.Protocol
}

// String is [IP:]PUBLISHED:TARGET/PROTOCOL, with " (host)" for host mode.
func (p PortConfig) String() string {
	s := fmt.Sprintf("%d:%d/%s", p.Published, p.Target, p.Proto())
	if p.PublishedIP != "" {
		s = p.PublishedIP + ":" + s
	}
	if p.Mode() == PublishHost {
		s += " (host)"
	}
	return s
}

// Clashes reports whether p and o cannot both be bound on one node: same
// protocol and published port, on the same address or one on every address.
func (p PortConfig) Clashes(o PortConfig) bool {
	return p.Published == o.Published && p.Proto() == o.Proto() &&
		(p.PublishedIP == "" || o.PublishedIP == "" || p.PublishedIP == o.PublishedIP)
}

// IngressPorts are the ports published on every node.
func (e EndpointSpec) IngressPorts() []PortConfig { return e.portsOf(PublishIngress) }

// HostPorts are the ports published on the nodes running the tasks.
func (e EndpointSpec) HostPorts() []PortConfig { return e.portsOf(PublishHost) }

func (e EndpointSpec) portsOf(m PublishMode) []PortConfig {
	var out []PortConfig
	for _, p := range e.Ports {
		if p.Mode() == m {
			out = append(out, p)
		}
	}
	return out
}

// NormalizePorts checks published ports and fills their defaults in place
// (protocol tcp, mode ingress, the address in canonical form, 0.0.0.0 as
// every address). The first error names the port and what is wrong. Two
// ports of one service may not clash (see Clashes), whatever their modes.
func NormalizePorts(ports []PortConfig) error {
	for i := range ports {
		p := &ports[i]
		name := fmt.Sprintf("port %d", p.Published)
		switch p.Protocol {
		case "":
			p.Protocol = ProtocolTCP
		case ProtocolTCP, ProtocolUDP:
		default:
			return fmt.Errorf("%s: protocol %q: want tcp or udp", name, p.Protocol)
		}
		switch p.PublishMode {
		case "":
			p.PublishMode = PublishIngress
		case PublishIngress, PublishHost:
		default:
			return fmt.Errorf("%s: publish mode %q: want ingress or host", name, p.PublishMode)
		}
		if p.Published == 0 || p.Target == 0 {
			return fmt.Errorf("port %s: want published and target ports from 1 to 65535", p)
		}
		if p.PublishedIP != "" {
			ip, err := netip.ParseAddr(p.PublishedIP)
			switch {
			case err != nil:
				return fmt.Errorf("%s: published IP %q: not an IP address", name, p.PublishedIP)
			case !ip.Unmap().Is4():
				return fmt.Errorf("%s: published IP %s: only IPv4 addresses can be published on", name, p.PublishedIP)
			case ip.Unmap().IsUnspecified():
				p.PublishedIP = ""
			case ip.Unmap().IsMulticast() || ip.Unmap() == netip.AddrFrom4([4]byte{255, 255, 255, 255}):
				return fmt.Errorf("%s: published IP %s: want a unicast address of the node", name, p.PublishedIP)
			default:
				p.PublishedIP = ip.Unmap().String()
			}
		}
	}
	for i := range ports {
		for j := range i {
			a, b := ports[i], ports[j]
			if a.Clashes(b) && a.PublishedIP == b.PublishedIP {
				key := fmt.Sprintf("%d/%s", a.Published, a.Protocol)
				if a.PublishedIP != "" {
					key = a.PublishedIP + ":" + key
				}
				return fmt.Errorf("port %s is published twice", key)
			}
			if a.Clashes(b) {
				return fmt.Errorf("port %s clashes with port %s: both bind %d/%s on the same address", ports[i], ports[j], ports[i].Published, ports[i].Protocol)
			}
		}
	}
	return nil
}
