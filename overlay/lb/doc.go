// Package lb owns Shoal's service load balancing in nftables: the per-task table shoal_lb that
// DNATs service VIPs to their running backends, and the per-node table shoal_ingress that DNATs
// published ports to tasks on the ingress network, and the per-node table shoal_gw that masquerades
// tasks' traffic to the outside. Each table is replaced whole, atomically; shoal_ingress carries a
// digest of the desired state it was built from, so a reconcile rewrites it only when it differs.
package lb
