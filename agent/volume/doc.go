// Package volume owns a node's named local volumes: a directory per volume
// under the node's data dir, made on first use, kept across tasks, listed
// and removed on request (never while a task on the node uses it).
package volume
