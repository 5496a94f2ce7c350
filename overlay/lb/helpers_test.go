package lb

import (
	"fmt"
	"net/netip"
	"os"
	"runtime"
	"sync/atomic"
	"testing"

	"github.com/google/nftables"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/shoal-dev/shoal/internal/testenv"
)

var netnsSeq atomic.Uint64

func requireRoot(t *testing.T) {
	t.Helper()
	testenv.Root(t)
}

// newNetns creates a fresh named network namespace with lo up, deleted when the test ends,
// and returns its path.
func newNetns(t *testing.T) string {
	t.Helper()
	requireRoot(t)
	name := fmt.Sprintf("shoal-lbtest-%d-%d", os.Getpid(), netnsSeq.Add(1))
	errc := make(chan error, 1)
	go func() {
		// NewNamed moves the calling thread into the new namespace: do it on a locked thread
		// and move back; a thread that cannot go back stays locked, so Go ends it.
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			runtime.UnlockOSThread()
			errc <- err
			return
		}
		defer orig.Close()
		ns, err := netns.NewNamed(name)
		if err != nil {
			if netns.Set(orig) == nil {
				runtime.UnlockOSThread()
			}
			errc <- err
			return
		}
		ns.Close()
		if err := netns.Set(orig); err != nil {
			errc <- err
			return
		}
		runtime.UnlockOSThread()
		errc <- nil
	}()
	if err := <-errc; err != nil {
		t.Fatalf("create netns %s: %v", name, err)
	}
	t.Cleanup(func() {
		if err := netns.DeleteNamed(name); err != nil {
			t.Errorf("delete netns %s: %v", name, err)
		}
	})
	path := "/run/netns/" + name
	h := nlHandle(t, path)
	lo, err := h.LinkByName("lo")
	if err != nil {
		t.Fatalf("lo in %s: %v", name, err)
	}
	if err := h.LinkSetUp(lo); err != nil {
		t.Fatalf("lo up in %s: %v", name, err)
	}
	return path
}

// nlHandle is a netlink handle in the namespace at path, closed when the test ends.
func nlHandle(t *testing.T, path string) *netlink.Handle {
	t.Helper()
	ns, err := netns.GetFromPath(path)
	if err != nil {
		t.Fatalf("open %s: %v", path, err)
	}
	defer ns.Close()
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		t.Fatalf("netlink in %s: %v", path, err)
	}
	t.Cleanup(h.Close)
	return h
}

// inNetns runs fn on a thread locked into the namespace at path. Sockets fn creates stay in
// that namespace after it returns.
func inNetns(path string, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			runtime.UnlockOSThread()
			errc <- err
			return
		}
		defer orig.Close()
		target, err := netns.GetFromPath(path)
		if err != nil {
			runtime.UnlockOSThread()
			errc <- err
			return
		}
		defer target.Close()
		if err := netns.Set(target); err != nil {
			if netns.Set(orig) == nil {
				runtime.UnlockOSThread()
			}
			errc <- err
			return
		}
		ferr := fn()
		if err := netns.Set(orig); err != nil {
			errc <- fmt.Errorf("return from %s: %w", path, err) // thread stays locked and dies
			return
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}

// addAddr adds prefix (e.g. "10.200.0.10/32") to link name in the namespace of h.
func addAddr(t *testing.T, h *netlink.Handle, link, prefix string) {
	t.Helper()
	l, err := h.LinkByName(link)
	if err != nil {
		t.Fatalf("link %s: %v", link, err)
	}
	addr, err := netlink.ParseAddr(prefix)
	if err != nil {
		t.Fatalf("parse %s: %v", prefix, err)
	}
	if err := h.AddrAdd(l, addr); err != nil {
		t.Fatalf("add %s to %s: %v", prefix, link, err)
	}
}

// tableState is what the kernel holds for one of our tables, read back with nftables.
type tableState struct {
	exists bool
	chains map[string]*nftables.Chain
	rules  map[string]int // per chain
	maps   [][]nftables.SetElement
}

func (s tableState) totalRules() int {
	n := 0
	for _, r := range s.rules {
		n += r
	}
	return n
}

func readTable(t *testing.T, path, name string) tableState {
	t.Helper()
	ns, err := netns.GetFromPath(path)
	if err != nil {
		t.Fatalf("open %s: %v", path, err)
	}
	defer ns.Close()
	c, err := nftables.New(nftables.WithNetNSFd(int(ns)), nftables.AsLasting())
	if err != nil {
		t.Fatalf("nftables in %s: %v", path, err)
	}
	defer c.CloseLasting()
	st := tableState{chains: map[string]*nftables.Chain{}, rules: map[string]int{}}
	tables, err := c.ListTablesOfFamily(nftables.TableFamilyIPv4)
	if err != nil {
		t.Fatalf("list tables: %v", err)
	}
	var table *nftables.Table
	for _, tb := range tables {
		if tb.Name == name {
			table = tb
		}
	}
	if table == nil {
		return st
	}
	st.exists = true
	chains, err := c.ListChainsOfTableFamily(nftables.TableFamilyIPv4)
	if err != nil {
		t.Fatalf("list chains: %v", err)
	}
	for _, ch := range chains {
		if ch.Table.Name != name {
			continue
		}
		st.chains[ch.Name] = ch
		rules, err := c.GetRules(table, ch)
		if err != nil {
			t.Fatalf("rules of %s: %v", ch.Name, err)
		}
		st.rules[ch.Name] = len(rules)
	}
	sets, err := c.GetSets(table)
	if err != nil {
		t.Fatalf("sets of %s: %v", name, err)
	}
	for _, s := range sets {
		elems, err := c.GetSetElements(s)
		if err != nil {
			t.Fatalf("elements of %s: %v", s.Name, err)
		}
		st.maps = append(st.maps, elems)
	}
	return st
}

func addrs(ss ...string) []netip.Addr {
	out := make([]netip.Addr, len(ss))
	for i, s := range ss {
		out[i] = netip.MustParseAddr(s)
	}
	return out
}

func netnsFromPath(path string) (netns.NsHandle, error) {
	h, err := netns.GetFromPath(path)
	if err != nil {
		return h, fmt.Errorf("open %s: %w", path, err)
	}
	return h, nil
}
