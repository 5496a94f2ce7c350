// Package store owns the cluster state: a go-memdb database that is the raft
// FSM (Apply, Snapshot, Restore), written only through change sets that go
// through a Proposer, read through consistent snapshots and watched as events.
package store
