// Package simexec is an Executor that runs no processes: tasks move through
// prepare and start after a configured latency, fail at a configured rate,
// and run until stopped. Hollow nodes (node.Hollow) use it to simulate
// workers by the thousand in one process.
package simexec
