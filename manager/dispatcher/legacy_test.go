package dispatcher

// The dispatcher's answer before the hub, kept as the benchmark's
// baseline: every answer read the node's tasks and then every node, task,
// service and network of the store.

import (
	"net/netip"

	"github.com/shoal-dev/shoal/api"
	"github.com/shoal-dev/shoal/store"
)

func legacyAnswer(tx store.ReadTx, nodeID string) api.Assignments {
	out := api.Assignments{Tasks: tx.TasksOnNode(nodeID)}
	out.Network = legacyNetworkState(tx, nodeID, out.Tasks)
	out.NetworkSum = sum(out.Network)
	return out
}

// legacyNetworkState gathers what node nodeID needs for the networks its tasks
// join and, once it has an ingress address, for the routing mesh: the
// ingress network, every node's ingress address as a peer and the
// published ports with their backends.
func legacyNetworkState(tx store.ReadTx, nodeID string, local []*api.Task) api.NetworkState {
	var st api.NetworkState
	joined := map[string]bool{}
	for _, t := range local {
		if !live(t) {
			continue
		}
		for _, a := range t.Networks {
			joined[a.NetworkID] = true
		}
	}
	var ingress *api.Network
	for _, n := range tx.Networks() {
		if n.Spec.Ingress && (ingress == nil || n.ID < ingress.ID) {
			ingress = n
		}
	}
	if self := tx.Node(nodeID); self != nil && self.IngressAddr != "" && ingress != nil {
		joined[ingress.ID] = true
		st.IngressAddr = self.IngressAddr
	}
	if len(joined) == 0 {
		return st
	}
	for _, n := range tx.Networks() {
		if joined[n.ID] {
			st.Networks = append(st.Networks, n)
		}
	}
	mesh := ingress != nil && st.IngressAddr != ""
	nodeAddr := map[string]string{}
	for _, n := range tx.Nodes() {
		nodeAddr[n.ID] = n.Status.Addr
		if mesh && n.IngressAddr != "" {
			p, err := netip.ParsePrefix(n.IngressAddr)
			if err != nil {
				continue
			}
			st.Peers = append(st.Peers, api.NetworkPeer{
				NetworkAttachment: api.NetworkAttachment{NetworkID: ingress.ID, Addr: n.IngressAddr, MAC: api.MACFromIP(p.Addr())},
				NodeID:            n.ID, NodeAddr: n.Status.Addr,
			})
		}
	}
	backends := map[string][]api.NetworkAttachment{}
	for _, t := range tx.Tasks() {
		if !live(t) {
			continue
		}
		for _, a := range t.Networks {
			if !joined[a.NetworkID] {
				continue
			}
			st.Peers = append(st.Peers, api.NetworkPeer{NetworkAttachment: a, TaskID: t.ID, NodeAddr: nodeAddr[t.NodeID]})
			if t.Status.State == api.TaskRunning {
				backends[t.ServiceID] = append(backends[t.ServiceID], a)
			}
		}
	}
	if mesh {
		for _, svc := range tx.Services() {
			var addrs []string
			for _, a := range backends[svc.ID] {
				if a.NetworkID == ingress.ID {
					addrs = append(addrs, a.Addr)
				}
			}
			for _, p := range svc.Spec.Endpoint.Ports {
				st.Published = append(st.Published, api.PublishedPort{PortConfig: p, Backends: addrs})
			}
		}
	}
	for _, svc := range tx.Services() {
		on := false
		for _, id := range svc.Spec.Networks {
			on = on || joined[id]
		}
		if !on {
			continue
		}
		mode := svc.Spec.Endpoint.Mode
		if mode == "" {
			mode = api.EndpointVIP
		}
		st.Services = append(st.Services, api.ServiceNetwork{
			Name: svc.Spec.Name, Mode: mode, VIPs: svc.Endpoint.VIPs, Backends: backends[svc.ID],
		})
	}
	return st
}
