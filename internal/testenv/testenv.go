package testenv

import (
	"os"
	"os/exec"
	"strings"
)

// TB is the part of testing.TB this package uses; an interface so the
// package can be tested with a recorder.
type TB interface {
	Helper()
	Skip(args ...any)
	Fatal(args ...any)
}

// CI reports whether the tests run under CI: CI set to anything but "",
// "0" or "false".
func CI() bool {
	switch strings.ToLower(os.Getenv("CI")) {
	case "", "0", "false":
		return false
	}
	return true
}

// Require stops the test unless cond holds: a skip on a developer's
// machine, a failure under CI. why names the prerequisite and how to get it.
func Require(t TB, cond bool, why string) {
	t.Helper()
	if cond {
		return
	}
	if CI() {
		t.Fatal("missing prerequisite (fails under CI=1): " + why)
		return
	}
	t.Skip("skipped: missing prerequisite (would fail under CI=1): " + why)
}

// Root requires running as root.
func Root(t TB) {
	t.Helper()
	Require(t, os.Geteuid() == 0, "needs root")
}

// Command requires name on PATH and returns its path.
func Command(t TB, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	Require(t, err == nil, "needs the command "+name+" on PATH")
	return p
}

// File requires path to exist.
func File(t TB, path string) {
	t.Helper()
	_, err := os.Stat(path)
	Require(t, err == nil, "needs "+path)
}

// OptIn skips the test, even under CI, unless the environment variable env
// is "1": for measurements that are not tests (benchmarks on real hosts).
func OptIn(t TB, env, why string) {
	t.Helper()
	if os.Getenv(env) != "1" {
		t.Skip("skipped: set " + env + "=1 to run: " + why)
	}
}

// After skips a step that needs an earlier one that failed, even under CI:
// that failure is already reported, so the skip hides nothing.
func After(t TB, ok bool, why string) {
	t.Helper()
	if !ok {
		t.Skip("skipped: an earlier step failed: " + why)
	}
}
