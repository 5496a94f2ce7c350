// Package orchestrator turns desired state into tasks: replicated slots, one
// task per eligible node for global services, restarts, spec changes, node
// failures, task history and the tasks of deleted services (see Reconcile).
package orchestrator
