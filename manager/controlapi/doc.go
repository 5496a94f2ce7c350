// Package controlapi serves the manager's /v1 HTTP API: it authenticates the
// caller, validates requests, writes through the store (which goes through
// raft) and forwards leader-only calls to the leader. It never schedules.
package controlapi
