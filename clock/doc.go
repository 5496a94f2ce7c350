// Package clock is the time source injected into everything that waits,
// so tests can move time by hand instead of sleeping.
package clock
