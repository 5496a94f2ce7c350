package overlay

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strings"

	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// NetnsDir is where named network namespaces are mounted, as by `ip netns add`.
const NetnsDir = "/run/netns"

// NetnsPath is the path of the named network namespace name.
func NetnsPath(name string) string { return filepath.Join(NetnsDir, name) }

func checkNetnsName(name string) error {
	if name == "" || name == "." || name == ".." || strings.ContainsRune(name, '/') {
		return fmt.Errorf("%w: netns name %q", ErrInvalid, name)
	}
	return nil
}

// NewTaskNetns creates the named network namespace name under NetnsDir, with lo up, and
// returns its path. If it already exists it is kept and its path returned.
func NewTaskNetns(name string) (string, error) {
	if err := checkNetnsName(name); err != nil {
		return "", err
	}
	path := NetnsPath(name)
	if isNetns(path) {
		return path, nil
	}
	// A leftover file that is not a namespace mount (a crash between create and mount).
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return "", fmt.Errorf("remove stale %s: %w", path, err)
	}
	// netns.NewNamed moves the calling thread into the new namespace: do it on a locked
	// thread and move back; a thread that cannot go back is never unlocked, so Go ends it.
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("current netns: %w", err)
			return
		}
		defer orig.Close()
		ns, err := netns.NewNamed(name)
		if err != nil {
			if serr := netns.Set(orig); serr == nil {
				runtime.UnlockOSThread()
			}
			errc <- fmt.Errorf("create netns %s: %w", name, err)
			return
		}
		ns.Close()
		if err := netns.Set(orig); err != nil {
			errc <- fmt.Errorf("return from netns %s: %w", name, err)
			return
		}
		runtime.UnlockOSThread()
		errc <- nil
	}()
	if err := <-errc; err != nil {
		return "", err
	}
	h, err := RealNetlinkAtPath(path)
	if err != nil {
		return "", errors.Join(err, DeleteTaskNetns(name))
	}
	defer h.Close()
	lo, err := h.h.LinkByName("lo")
	if err == nil {
		err = h.h.LinkSetUp(lo)
	}
	if err != nil {
		return "", errors.Join(fmt.Errorf("set lo up in %s: %w", name, err), DeleteTaskNetns(name))
	}
	return path, nil
}

// isNetns reports whether path is a mounted network namespace.
func isNetns(path string) bool {
	var st unix.Statfs_t
	return unix.Statfs(path, &st) == nil && st.Type == unix.NSFS_MAGIC
}

// DeleteTaskNetns unmounts and removes the named network namespace; the kernel frees it, and
// the veth ends inside, once nothing holds it. A missing namespace is no error.
func DeleteTaskNetns(name string) error {
	if err := checkNetnsName(name); err != nil {
		return err
	}
	path := NetnsPath(name)
	if err := unix.Unmount(path, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.ENOENT) && !errors.Is(err, unix.EINVAL) {
		return fmt.Errorf("unmount %s: %w", path, err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove %s: %w", path, err)
	}
	return nil
}

// RealNetlinkAtPath is RealNetlinkAt for the namespace mounted at path.
func RealNetlinkAtPath(path string) (*Kernel, error) {
	ns, err := netns.GetFromPath(path)
	if err != nil {
		return nil, fmt.Errorf("open netns %s: %w", path, err)
	}
	defer ns.Close()
	return RealNetlinkAt(ns)
}

// InNetns runs f on a thread inside the network namespace at path, for the calls that have
// no namespace argument (listening or dialling as a task). Sockets made in f stay in that
// namespace. f must not start goroutines that expect to be in it.
func InNetns(path string, f func() error) error {
	ns, err := netns.GetFromPath(path)
	if err != nil {
		return fmt.Errorf("open netns %s: %w", path, err)
	}
	defer ns.Close()
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("current netns: %w", err)
			return
		}
		defer orig.Close()
		if err := netns.Set(ns); err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("enter netns %s: %w", path, err)
			return
		}
		ferr := f()
		if err := netns.Set(orig); err != nil {
			errc <- errors.Join(ferr, fmt.Errorf("return from netns %s: %w", path, err))
			return // the thread stays locked and dies with the goroutine
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}
