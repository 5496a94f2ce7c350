// Package allocator is the cluster's IPAM: it picks each overlay network's
// subnet, VNI and gateway, gives every service a virtual IP per network and
// every task an address per network before the task is scheduled.
package allocator
