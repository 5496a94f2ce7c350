package controlapi

import (
	"fmt"
	"slices"
	"strings"

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

// checkPortsFree refuses ports that clash (api.PortConfig.Clashes) with a
// port of another service when either is in ingress mode: an ingress port
// is bound on every node. Host-mode ports of different services may be the
// same; the scheduler keeps their tasks on different nodes. selfID is the
// service being updated, "" for a new one.
func checkPortsFree(tx store.ReadTx, ports []api.PortConfig, selfID string) error {
	// By name, so a port taken by several services names the same one each time.
	services := tx.Services()
	slices.SortFunc(services, func(a, b *api.Service) int { return strings.Compare(a.Spec.Name, b.Spec.Name) })
	for _, other := range services {
		if other.ID == selfID {
			continue
		}
		for _, op := range other.Spec.Endpoint.Ports {
			for _, p := range ports {
				if !p.Clashes(op) || (p.Mode() == api.PublishHost && op.Mode() == api.PublishHost) {
					continue
				}
				key := fmt.Sprintf("%d/%s", p.Published, p.Proto())
				if op.PublishedIP != "" && op.PublishedIP == p.PublishedIP {
					key = p.PublishedIP + ":" + key
				}
				how := ""
				if op.Mode() != p.Mode() {
					how = fmt.Sprintf(" in %s mode", op.Mode())
				}
				return badRequest("port %s is already published by service %s%s", key, other.Spec.Name, how)
			}
		}
	}
	return nil
}
