// Package dispatcher keeps the leader's sessions with nodes: it takes their
// heartbeats and decides, from heartbeats and gossip, which nodes are
// ready, unknown or down; it hands each node its assignments from a hub
// kept by store watches, and writes their task status back in batches.
package dispatcher
