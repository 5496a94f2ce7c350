package api

import (
	"fmt"
	"net/netip"
)

// Network is an overlay network: one VXLAN segment (VNI) carrying one IPv4
// subnet across the nodes that run its tasks.
type Network struct {
	ID   string      `json:"id"`
	Meta Meta        `json:"meta"`
	Spec NetworkSpec `json:"spec"`
	// VNI is the VXLAN network identifier, unique in the cluster.
	VNI uint32 `json:"vni"`
	// Gateway is the subnet's first address (no prefix), kept off tasks.
	Gateway string `json:"gateway"`
}

// NetworkSpec is what a user asks for. Subnet is the CIDR given, or the one
// the allocator picked when none was.
type NetworkSpec struct {
	Name   string `json:"name"`
	Subnet string `json:"subnet,omitempty"`
	// Attachable lets containers outside services join (kept for later).
	Attachable bool `json:"attachable,omitempty"`
	// Ingress marks the routing-mesh network that carries published ports.
	Ingress bool              `json:"ingress,omitempty"`
	Labels  map[string]string `json:"labels,omitempty"`
}

// EndpointMode is how a service's name resolves: to one virtual IP that
// load-balances over its tasks, or to the task addresses themselves.
type EndpointMode string

const (
	EndpointVIP   EndpointMode = "vip"
	EndpointDNSRR EndpointMode = "dnsrr"
)

// Port protocols.
const (
	ProtocolTCP = "tcp"
	ProtocolUDP = "udp"
)

// PortConfig publishes a task port: on every node (the ingress routing
// mesh, the default) or on the node running the task (host mode); see
// api/ports.go.
type PortConfig struct {
	// Published is the port nodes listen on.
	Published uint16 `json:"published"`
	// Target is the port inside the task.
	Target uint16 `json:"target"`
	// Protocol is tcp (the default) or udp.
	Protocol string `json:"protocol,omitempty"`
	// PublishMode is ingress (the default) or host.
	PublishMode PublishMode `json:"publish_mode,omitempty"`
	// PublishedIP, when set, is the one host address (IPv4) the port is
	// bound on; "" is every address of the node.
	PublishedIP string `json:"published_ip,omitempty"`
}

// EndpointSpec is how a service is reached.
type EndpointSpec struct {
	// Mode is vip (the default) or dnsrr.
	Mode  EndpointMode `json:"mode,omitempty"`
	Ports []PortConfig `json:"ports,omitempty"`
}

// EndpointStatus is what the allocator gave a service.
type EndpointStatus struct {
	// VIPs holds one virtual IP per network of a service in vip mode.
	VIPs []VIP `json:"vips,omitempty"`
}

// VIP is a service's virtual IP on one network.
type VIP struct {
	NetworkID string `json:"network_id"`
	// Addr is a CIDR: the address with its network's prefix length.
	Addr string `json:"addr"`
}

// NetworkAttachment is a task's interface on one network.
type NetworkAttachment struct {
	NetworkID string `json:"network_id"`
	// Addr is a CIDR: the address with its network's prefix length.
	Addr string `json:"addr"`
	// MAC is derived from the address (MACFromIP), so ARP never needs the underlay.
	MAC string `json:"mac"`
}

// MACFromIP derives a container MAC from an IPv4 address, as Docker does:
// 02:42 followed by the four address bytes. Other addresses give "".
func MACFromIP(ip netip.Addr) string {
	if !ip.Is4() {
		return ""
	}
	b := ip.As4()
	return fmt.Sprintf("02:42:%02x:%02x:%02x:%02x", b[0], b[1], b[2], b[3])
}

// NetworkState is what a node needs to wire its tasks' networks: the
// networks they join, every live task on those networks with the underlay
// address of its node, and the services there to resolve and balance.
type NetworkState struct {
	Networks []*Network       `json:"networks,omitempty"`
	Peers    []NetworkPeer    `json:"peers,omitempty"`
	Services []ServiceNetwork `json:"services,omitempty"`
	// IngressAddr is this node's address (a CIDR) on the ingress network,
	// which is then among Networks; "" while it has none.
	IngressAddr string `json:"ingress_addr,omitempty"`
	// Published are the ports every node publishes, with their backends.
	Published []PublishedPort `json:"published,omitempty"`
}

// PublishedPort is a port published on every node and the running tasks
// behind it.
type PublishedPort struct {
	PortConfig
	// Backends are the ingress addresses (CIDRs) of the service's running tasks.
	Backends []string `json:"backends,omitempty"`
}

// NetworkPeer is one task's attachment as other nodes see it, or a node's
// own ingress address (TaskID empty, NodeID set).
type NetworkPeer struct {
	NetworkAttachment
	TaskID string `json:"task_id"`
	NodeID string `json:"node_id,omitempty"`
	// NodeAddr is the underlay (VTEP) address of the task's node.
	NodeAddr string `json:"node_addr"`
}

// ServiceNetwork is a service as seen on the networks of one node's tasks.
type ServiceNetwork struct {
	Name string `json:"name"`
	// Aliases resolve like Name (ServiceSpec.Aliases).
	Aliases []string     `json:"aliases,omitempty"`
	Mode    EndpointMode `json:"mode"`
	VIPs    []VIP        `json:"vips,omitempty"`
	// Backends are the attachments of the service's running tasks.
	Backends []NetworkAttachment `json:"backends,omitempty"`
}
