// Package scheduler places pending tasks on nodes. It is a pure function of
// a Snapshot (nodes and the tasks counted against them) and a batch of
// pending tasks: a pipeline of filters picks the eligible nodes, a heap
// spreads tasks over them, and every task left over gets a reason.
package scheduler
