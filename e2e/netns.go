package e2e

import (
	"fmt"
	"net"
	"os"
	"runtime"
	"time"

	"golang.org/x/sys/unix"
)

// inNetns runs f on an OS thread switched into the network namespace ns.
// Sockets created in f stay in ns after it returns.
func inNetns(ns string, f func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		// The thread is not unlocked if switching back fails, so the
		// runtime throws it away instead of reusing it in the wrong ns.
		self, err := os.Open("/proc/thread-self/ns/net")
		if err != nil {
			errc <- err
			return
		}
		defer self.Close()
		target, err := os.Open("/run/netns/" + ns)
		if err != nil {
			errc <- fmt.Errorf("netns %s: %w", ns, err)
			return
		}
		defer target.Close()
		if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("setns %s: %w", ns, err)
			return
		}
		ferr := f()
		if err := unix.Setns(int(self.Fd()), unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("setns back: %w", err)
			return
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}

// Listen opens a TCP listener on the host's address.
func (h *Host) Listen(port int) (net.Listener, error) {
	var l net.Listener
	err := inNetns(h.NS, func() error {
		var err error
		l, err = net.Listen("tcp", net.JoinHostPort(h.IP, fmt.Sprint(port)))
		return err
	})
	return l, err
}

// Dial connects from the host to addr over TCP.
func (h *Host) Dial(addr string, timeout time.Duration) (net.Conn, error) {
	var c net.Conn
	err := inNetns(h.NS, func() error {
		var err error
		c, err = net.DialTimeout("tcp", addr, timeout)
		return err
	})
	return c, err
}
