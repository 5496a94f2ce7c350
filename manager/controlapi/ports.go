package controlapi

import (
	"github.com/shoal-dev/shoal/api"
	"github.com/shoal-dev/shoal/store"
)

// checkOwnPorts refuses published ports that Shoal itself uses on some
// node: the defaults and every node's API, raft, gossip and metrics ports.
func checkOwnPorts(tx store.ReadTx, ports []api.PortConfig) error {
	if len(ports) == 0 {
		return nil
	}
	var endpoints []api.Endpoints
	for _, n := range tx.Nodes() {
		endpoints = append(endpoints, n.Endpoints)
	}
	own := api.OwnPorts(endpoints...)
	for _, p := range ports {
		if what, ok := own[p.Published]; ok {
			return badRequest("port %d cannot be published: it is Shoal's own, %s; publishing it would send the cluster's own traffic to the service's tasks (pick another published port; the target port may stay %d)", p.Published, what, p.Target)
		}
	}
	return nil
}
