// Package deks owns the keys that encrypt a manager's raft data at rest: the
// data-encryption key (DEK) each manager keeps in a root-only key file, and
// the cluster's unlock key that wraps it when autolock is on. See
// docs/architecture.md, Security, "Key hierarchy".
package deks
