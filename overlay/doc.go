// Package overlay owns the per-node data plane of overlay networks: for each network with a
// local task it keeps a bridge and a VXLAN device, a veth pair into each task's netns, and the
// static FDB and neighbour entries for remote tasks, plus a gateway bridge with a link from each
// task's netns for traffic to the outside, reconciled from desired state to the kernel.
package overlay
