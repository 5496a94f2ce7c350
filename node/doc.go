// Package node is the composition root of one shoal process: it owns the
// data directory and the node's identity, and starts gossip, the agent and,
// on managers, the manager role.
package node
