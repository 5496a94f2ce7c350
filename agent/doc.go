// Package agent is the worker role of a node: it keeps a session with the
// managers (heartbeats carrying the node's description) and reports what
// its container engine is. Task runners come with services.
package agent
