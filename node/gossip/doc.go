// Package gossip owns cluster membership and failure detection for every node:
// it wraps hashicorp/memberlist (encrypted with the cluster gossip key), tracks
// each member's latest state (alive, suspect, dead, left) and its metadata, and
// publishes state changes to subscribers.
package gossip
