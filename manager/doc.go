// Package manager is the manager role of a node: it opens raft and the
// store, serves the control API and, while this manager leads, runs the
// controllers: the orchestrator, the scheduling pass and the dispatcher.
package manager
