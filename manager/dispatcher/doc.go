// Package dispatcher keeps the leader's sessions with nodes: it takes their
// heartbeats and decides, from heartbeats and gossip, which nodes are ready
// and which are down. Later it also streams assignments out and status in.
package dispatcher
