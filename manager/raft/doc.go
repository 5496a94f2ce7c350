// Package raft owns the managers' consensus: it wraps hashicorp/raft with a bbolt log and
// stable store, a file snapshot store and a mutual-TLS stream layer, and exposes
// bootstrap, apply, membership changes and leadership notifications with clear errors.
package raft
