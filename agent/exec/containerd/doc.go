// Package containerd is the real exec.Executor: it runs each task as a
// containerd container (runc underneath) named after the task, in the "shoal"
// namespace, and re-adopts the containers it finds after an agent restart.
package containerd
