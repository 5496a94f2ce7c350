// Package testenv lets a test state its prerequisites (root, a command, a
// file): a developer's machine without them skips the test, CI (CI=1) fails
// it, so CI cannot go green having run nothing.
package testenv
