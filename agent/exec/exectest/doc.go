// Package exectest is a recording fake of exec.Executor for unit tests of the
// agent: it keeps containers in memory, records every call, and lets a test
// make tasks exit, fail or pre-exist.
package exectest
