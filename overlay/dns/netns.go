package dns

import (
	"errors"
	"fmt"
	"io"
	"runtime"

	"github.com/vishvananda/netns"
)

// inNetns runs fn on a locked OS thread moved into ns, then moves the thread back.
// Sockets fn opens stay in ns. A thread that cannot move back is never unlocked, so the Go
// runtime ends it with its goroutine; a result that implements io.Closer is then closed.
func inNetns[T any](ns netns.NsHandle, fn func() (T, error)) (T, error) {
	type result struct {
		v   T
		err error
	}
	ch := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		var zero T
		orig, err := netns.Get()
		if err != nil {
			runtime.UnlockOSThread()
			ch <- result{zero, fmt.Errorf("current netns: %w", err)}
			return
		}
		defer orig.Close()
		if err := netns.Set(ns); err != nil {
			// setns failed: the thread is still where it was.
			runtime.UnlockOSThread()
			ch <- result{zero, fmt.Errorf("enter netns: %w", err)}
			return
		}
		v, ferr := fn()
		if err := netns.Set(orig); err != nil {
			if c, ok := any(v).(io.Closer); ok && ferr == nil {
				c.Close()
			}
			ch <- result{zero, errors.Join(ferr, fmt.Errorf("return from netns: %w", err))}
			return
		}
		runtime.UnlockOSThread()
		ch <- result{v, ferr}
	}()
	r := <-ch
	return r.v, r.err
}
