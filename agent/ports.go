package agent

import (
	"fmt"
	"net/netip"
	"path/filepath"
	"slices"
	"strings"

	"github.com/shoal-dev/shoal/api"
	"github.com/shoal-dev/shoal/overlay"
	"github.com/shoal-dev/shoal/overlay/lb"
)

// needsNetns reports whether a task gets a network namespace of Shoal's:
// it joins networks, or publishes host-mode ports (reached on its gateway
// link).
func needsNetns(t *api.Task) bool { return len(t.Networks) > 0 || len(t.HostPorts) > 0 }

// applyHostPortsLocked publishes the host-mode ports of this node's tasks
// wanted running: DNAT on the node to the task's gateway-link address, no
// masquerade, so the task sees its clients' addresses (its default route is
// the gateway bridge: replies come back through the node's conntrack).
func (n *Network) applyHostPortsLocked(local []*api.Task) error {
	var ports []lb.HostPort
	var refused []string
	for _, t := range local {
		if len(t.HostPorts) == 0 || t.DesiredState != api.TaskRunning || t.Status.State.Terminal() {
			continue
		}
		addr, err := n.plane.TaskGatewayAddr(overlay.NetnsPath(n.netnsName(t.ID)))
		if err != nil {
			n.log.Debug("host ports wait for the task's gateway link", "task", t.ID, "err", err)
			continue
		}
		for _, p := range t.HostPorts {
			if what, ok := n.own[p.Published]; ok {
				refused = append(refused, fmt.Sprintf("%s: %s", p, what))
				continue
			}
			hp := lb.HostPort{Protocol: p.Proto(), Published: p.Published, Target: p.Target, Backend: addr}
			if p.PublishedIP != "" {
				if hp.Addr, err = netip.ParseAddr(p.PublishedIP); err != nil || !hp.Addr.Is4() {
					continue // the managers refuse such an address
				}
			}
			ports = append(ports, hp)
		}
	}
	if text := strings.Join(refused, ", "); text != n.hostRefused {
		if text != "" {
			n.log.Warn("not publishing host ports this node uses itself", "ports", text)
		}
		n.hostRefused = text
	}
	// Two local tasks on one port (the scheduler keeps them apart; an older
	// manager might not): the first by task ID keeps it.
	ports = slices.CompactFunc(ports, func(a, b lb.HostPort) bool {
		return a.Protocol == b.Protocol && a.Published == b.Published && (!a.Addr.IsValid() || !b.Addr.IsValid() || a.Addr == b.Addr)
	})
	if len(ports) > 0 {
		// The node reaches its host ports on 127.0.0.1 too, as docker's.
		if err := writeSysctl(filepath.Join("/proc/sys/net/ipv4/conf", n.plane.GatewayBridge(), "route_localnet"), "1"); err != nil {
			n.log.Debug("route_localnet on the gateway bridge", "err", err)
		}
	}
	changed, err := lb.SyncHostPorts("", ports, overlay.GatewayPrefix())
	if err != nil {
		return fmt.Errorf("host ports: %w", err)
	}
	if changed {
		n.log.Debug("host port table replaced", "ports", len(ports))
	}
	return nil
}

// applyMeshReplyLocked routes the replies of a task on the ingress network
// back through the node each connection came from (see lb.ApplyMeshReply),
// so that the routing mesh need not masquerade its clients.
func (n *Network) applyMeshReplyLocked(t *api.Task, path string) error {
	ingressID := ""
	for _, nw := range n.state.Networks {
		if nw.Spec.Ingress {
			ingressID = nw.ID
		}
	}
	ifname := ""
	for i, a := range t.Networks {
		if ingressID != "" && a.NetworkID == ingressID {
			ifname = fmt.Sprintf("eth%d", i)
		}
	}
	if ifname == "" {
		return nil
	}
	var nodes []netip.Addr
	if p, err := netip.ParsePrefix(n.state.IngressAddr); err == nil {
		nodes = append(nodes, p.Addr())
	}
	for _, p := range n.state.Peers {
		if p.NodeID == "" || p.NetworkID != ingressID {
			continue
		}
		if a, err := netip.ParsePrefix(p.Addr); err == nil {
			nodes = append(nodes, a.Addr())
		}
	}
	slices.SortFunc(nodes, netip.Addr.Compare)
	nodes = slices.Compact(nodes)
	text := fmt.Sprint(ifname, nodes)
	if n.mesh[t.ID] == text {
		return nil
	}
	if err := lb.ApplyMeshReply(path, ifname, nodes); err != nil {
		return err
	}
	n.mesh[t.ID] = text
	return nil
}
