// Package exec is the agent's view of a container engine: the Executor
// interface that prepares, starts, waits for, stops, removes and lists the
// containers of tasks. exec/containerd is the real one, exec/exectest a fake.
package exec
