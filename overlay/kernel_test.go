package overlay_test

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/shoal-dev/shoal/internal/testenv"
	"github.com/shoal-dev/shoal/overlay"
	"github.com/shoal-dev/shoal/overlay/lb"
	"github.com/shoal-dev/shoal/overlay/overlaytest"
)

// host is a network namespace standing for one node, with a Plane working inside it.
type host struct {
	name  string
	ns    netns.NsHandle
	nl    *netlink.Handle // for the test's own setup and checks
	vtep  netip.Addr
	plane *overlay.Plane
	rec   *overlaytest.Recorder
	kern  *overlay.Kernel
}

// newNetns makes a named netns that t.Cleanup removes, and returns its path and a handle.
func newNetns(t *testing.T, name string) (string, netns.NsHandle) {
	t.Helper()
	path, err := overlay.NewTaskNetns(name)
	if err != nil {
		t.Fatalf("NewTaskNetns(%s): %v", name, err)
	}
	t.Cleanup(func() {
		if err := overlay.DeleteTaskNetns(name); err != nil {
			t.Errorf("DeleteTaskNetns(%s): %v", name, err)
		}
	})
	ns, err := netns.GetFromPath(path)
	if err != nil {
		t.Fatalf("open %s: %v", path, err)
	}
	t.Cleanup(func() { ns.Close() })
	return path, ns
}

func newHost(t *testing.T, name string, vtep netip.Addr) *host {
	t.Helper()
	_, ns := newNetns(t, name)
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		t.Fatalf("netlink handle in %s: %v", name, err)
	}
	t.Cleanup(h.Close)
	kern, err := overlay.RealNetlinkAt(ns)
	if err != nil {
		t.Fatalf("RealNetlinkAt(%s): %v", name, err)
	}
	t.Cleanup(func() { kern.Close() })
	rec := overlaytest.NewRecorder(kern)
	log := slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug})).With("host", name)
	p := overlay.New(overlay.Config{VTEP: vtep, Prefix: "sh", Logger: log}, rec)
	t.Cleanup(func() { p.Close() })
	return &host{name: name, ns: ns, nl: h, vtep: vtep, plane: p, rec: rec, kern: kern}
}

// joinUnderlay links two hosts with a veth pair carrying their VTEP addresses.
func joinUnderlay(t *testing.T, a, b *host) {
	t.Helper()
	veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "ul0", MTU: 1500}, PeerName: "ul0", PeerNamespace: netlink.NsFd(b.ns)}
	if err := a.nl.LinkAdd(veth); err != nil {
		t.Fatalf("add underlay veth: %v", err)
	}
	for _, h := range []*host{a, b} {
		l, err := h.nl.LinkByName("ul0")
		if err != nil {
			t.Fatalf("%s: %v", h.name, err)
		}
		addr := &netlink.Addr{IPNet: &net.IPNet{IP: h.vtep.AsSlice(), Mask: net.CIDRMask(24, 32)}}
		if err := h.nl.AddrAdd(l, addr); err != nil {
			t.Fatalf("%s: add %s: %v", h.name, h.vtep, err)
		}
		if err := h.nl.LinkSetUp(l); err != nil {
			t.Fatalf("%s: set ul0 up: %v", h.name, err)
		}
	}
}

func ownLinks(t *testing.T, h *host) []string {
	t.Helper()
	links, err := h.kern.Links("sh")
	if err != nil {
		t.Fatalf("%s: list links: %v", h.name, err)
	}
	var names []string
	for _, l := range links {
		names = append(names, l.Name)
	}
	return names
}

func TestKernelTwoHosts(t *testing.T) {
	testenv.Root(t)
	id := fmt.Sprintf("ovt%d-%04x", os.Getpid(), rand.N(0x10000)) // unique per run
	x := rand.N(250) + 1
	a := newHost(t, id+"-ha", netip.MustParseAddr(fmt.Sprintf("10.99.%d.1", x)))
	b := newHost(t, id+"-hb", netip.MustParseAddr(fmt.Sprintf("10.99.%d.2", x)))
	joinUnderlay(t, a, b)
	taskA, _ := newNetns(t, id+"-ta")
	taskB, _ := newNetns(t, id+"-tb")

	nw := overlay.Network{ID: "kn1", VNI: 7001, Subnet: netip.MustParsePrefix("10.50.0.0/24"), Gateway: netip.MustParseAddr("10.50.0.1")}
	epA := overlay.Endpoint{TaskID: "ktaskA", NetworkID: nw.ID, Addr: netip.MustParsePrefix("10.50.0.2/24"), Netns: taskA}
	epB := overlay.Endpoint{TaskID: "ktaskB", NetworkID: nw.ID, Addr: netip.MustParsePrefix("10.50.0.3/24"), Netns: taskB}
	// Every node gets every task as a peer; a Plane skips the ones on its own VTEP.
	peers := []overlay.Peer{
		{NetworkID: nw.ID, Addr: epA.Addr.Addr(), VTEP: a.vtep},
		{NetworkID: nw.ID, Addr: epB.Addr.Addr(), VTEP: b.vtep},
	}
	dA := overlay.Desired{Networks: []overlay.Network{nw}, Endpoints: []overlay.Endpoint{epA}, Peers: peers}
	dB := overlay.Desired{Networks: []overlay.Network{nw}, Endpoints: []overlay.Endpoint{epB}, Peers: peers}
	for _, step := range []struct {
		h *host
		d overlay.Desired
	}{{a, dA}, {b, dB}} {
		if err := step.h.plane.Reconcile(step.d); err != nil {
			t.Fatalf("%s: Reconcile: %v", step.h.name, err)
		}
	}

	t.Run("kernel state", func(t *testing.T) {
		l, err := a.nl.LinkByName("shv7001")
		if err != nil {
			t.Fatalf("vxlan device: %v", err)
		}
		vx := l.(*netlink.Vxlan)
		if vx.VxlanId != 7001 || vx.Port != overlay.VXLANPort || vx.Learning || !vx.SrcAddr.Equal(a.vtep.AsSlice()) || vx.MTU != 1450 || vx.Group != nil {
			t.Errorf("vxlan: got vni %d port %d learning %t local %s mtu %d group %s, want 7001 4789 false %s 1450 none",
				vx.VxlanId, vx.Port, vx.Learning, vx.SrcAddr, vx.MTU, vx.Group, a.vtep)
		}
		br, err := a.nl.LinkByName("shb7001")
		if err != nil {
			t.Fatalf("bridge: %v", err)
		}
		if vx.MasterIndex != br.Attrs().Index {
			t.Errorf("vxlan master: got %d, want the bridge %d", vx.MasterIndex, br.Attrs().Index)
		}
		if addrs, _ := a.nl.AddrList(br, netlink.FAMILY_V4); len(addrs) != 0 {
			t.Errorf("bridge addresses: got %v, want none", addrs)
		}
		got, err := a.kern.Iface(taskA, "eth0")
		if err != nil {
			t.Fatalf("eth0 in task A: %v", err)
		}
		if got.MTU != 1450 || got.MAC.String() != overlay.MACFor(epA.Addr.Addr()).String() || !got.Up {
			t.Errorf("eth0 in task A: got %+v", got)
		}
		fdb, err := a.kern.FDB("shv7001")
		if err != nil || len(fdb) != 1 || fdb[0].VTEP != b.vtep || fdb[0].MAC.String() != overlay.MACFor(epB.Addr.Addr()).String() {
			t.Errorf("fdb on A: got %v (%v), want B's MAC -> %s", fdb, err, b.vtep)
		}
		neigh, err := a.kern.Neighbors(taskA, "eth0")
		if err != nil || len(neigh) != 1 || neigh[0].IP != epB.Addr.Addr() {
			t.Errorf("neighbours in task A: got %v (%v), want B's", neigh, err)
		}
	})

	t.Run("second reconcile changes nothing", func(t *testing.T) {
		for _, step := range []struct {
			h *host
			d overlay.Desired
		}{{a, dA}, {b, dB}} {
			step.h.rec.Reset()
			if err := step.h.plane.Reconcile(step.d); err != nil {
				t.Fatalf("%s: Reconcile: %v", step.h.name, err)
			}
			if calls := step.h.rec.Calls(); len(calls) != 0 {
				t.Errorf("%s: calls: got %v, want none", step.h.name, calls)
			}
		}
	})

	t.Run("task A reaches task B over vxlan", func(t *testing.T) {
		var ln net.Listener
		if err := overlay.InNetns(taskB, func() (err error) {
			ln, err = net.Listen("tcp", netip.AddrPortFrom(epB.Addr.Addr(), 0).String())
			return err
		}); err != nil {
			t.Fatalf("listen in task B: %v", err)
		}
		defer ln.Close()
		go func() {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			defer c.Close()
			io.Copy(c, c)
		}()

		var c net.Conn
		deadline := time.Now().Add(10 * time.Second)
		for {
			err := overlay.InNetns(taskA, func() (err error) {
				c, err = net.DialTimeout("tcp", ln.Addr().String(), 2*time.Second)
				return err
			})
			if err == nil {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("dial %s from task A: %v", ln.Addr(), err)
			}
		}
		defer c.Close()
		if err := c.SetDeadline(time.Now().Add(10 * time.Second)); err != nil {
			t.Fatal(err)
		}
		// More than a few full-size segments: a wrong MTU would stall here.
		msg := bytes.Repeat([]byte("shoal overlay "), 20000)
		go c.Write(msg)
		got := make([]byte, len(msg))
		if _, err := io.ReadFull(c, got); err != nil {
			t.Fatalf("read echo: %v", err)
		}
		if !bytes.Equal(got, msg) {
			t.Errorf("echo differs from what was sent")
		}
	})

	t.Run("removed endpoint leaves nothing", func(t *testing.T) {
		if err := a.plane.Reconcile(overlay.Desired{Networks: []overlay.Network{nw}, Peers: peers}); err != nil {
			t.Fatalf("Reconcile: %v", err)
		}
		if got := ownLinks(t, a); len(got) != 0 {
			t.Errorf("links on A: got %v, want none", got)
		}
		if _, err := a.kern.Iface(taskA, "eth0"); !errors.Is(err, overlay.ErrNotFound) {
			t.Errorf("eth0 in task A: got %v, want %v", err, overlay.ErrNotFound)
		}
		if got := ownLinks(t, b); len(got) != 3 {
			t.Errorf("links on B: got %v, want its bridge, vxlan and veth", got)
		}
	})
}

func TestKernelGateway(t *testing.T) {
	testenv.Root(t)
	id := fmt.Sprintf("ovg%d-%04x", os.Getpid(), rand.N(0x10000))
	x := rand.N(250) + 1
	a := newHost(t, id+"-ha", netip.MustParseAddr(fmt.Sprintf("10.98.%d.1", x)))
	out := newHost(t, id+"-ho", netip.MustParseAddr(fmt.Sprintf("10.98.%d.2", x))) // outside the overlay
	joinUnderlay(t, a, out)
	hostA := overlay.NetnsPath(id + "-ha")
	taskA, _ := newNetns(t, id+"-ta")

	nw := overlay.Network{ID: "kg1", VNI: 7002, Subnet: netip.MustParsePrefix("10.51.0.0/24")}
	ep := overlay.Endpoint{TaskID: "gtaskA", NetworkID: nw.ID, Addr: netip.MustParsePrefix("10.51.0.2/24"), Netns: taskA}
	d := overlay.Desired{Networks: []overlay.Network{nw}, Endpoints: []overlay.Endpoint{ep}, Gateway: true}
	if err := a.plane.Reconcile(d); err != nil {
		t.Fatalf("Reconcile: %v", err)
	}
	if err := overlay.InNetns(hostA, func() error {
		return os.WriteFile("/proc/sys/net/ipv4/ip_forward", []byte("1"), 0o644)
	}); err != nil {
		t.Fatalf("ip_forward on A: %v", err)
	}
	if err := lb.ApplyGateway(hostA, overlay.GatewayPrefix(), a.plane.GatewayBridge()); err != nil {
		t.Fatalf("masquerade on A: %v", err)
	}

	got, err := a.kern.Iface(taskA, overlay.GatewayIfname)
	if err != nil {
		t.Fatalf("%s in the task: %v", overlay.GatewayIfname, err)
	}
	if want := netip.MustParsePrefix("172.18.0.2/16"); got.Gateway != overlay.GatewayAddr().Addr() || len(got.Addrs) == 0 || got.Addrs[0] != want || got.MTU != 1500 {
		t.Errorf("%s in the task: got %+v, want %s, default route via %s, MTU 1500", overlay.GatewayIfname, got, want, overlay.GatewayAddr().Addr())
	}
	a.rec.Reset()
	if err := a.plane.Reconcile(d); err != nil {
		t.Fatalf("second Reconcile: %v", err)
	}
	if calls := a.rec.Calls(); len(calls) != 0 {
		t.Errorf("second Reconcile: calls %v, want none", calls)
	}

	// The task reaches the outside host, which sees the connection come from A's address.
	var ln net.Listener
	if err := overlay.InNetns(overlay.NetnsPath(id+"-ho"), func() (err error) {
		ln, err = net.Listen("tcp", netip.AddrPortFrom(out.vtep, 0).String())
		return err
	}); err != nil {
		t.Fatalf("listen outside: %v", err)
	}
	defer ln.Close()
	from := make(chan net.Addr, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		from <- c.RemoteAddr()
		c.Close()
	}()
	var c net.Conn
	if err := overlay.InNetns(taskA, func() (err error) {
		c, err = net.DialTimeout("tcp", ln.Addr().String(), 5*time.Second)
		return err
	}); err != nil {
		t.Fatalf("dial %s from the task: %v", ln.Addr(), err)
	}
	c.Close()
	select {
	case addr := <-from:
		if ap := netip.MustParseAddrPort(addr.String()); ap.Addr() != a.vtep {
			t.Errorf("outside host saw the task come from %s, want A's address %s (masquerade)", ap.Addr(), a.vtep)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("outside host accepted no connection")
	}

	if err := a.plane.Reconcile(overlay.Desired{Networks: []overlay.Network{nw}, Gateway: true}); err != nil {
		t.Fatalf("Reconcile without the task: %v", err)
	}
	if got := ownLinks(t, a); len(got) != 0 {
		t.Errorf("links on A: got %v, want none", got)
	}
	if _, err := a.kern.Iface(taskA, overlay.GatewayIfname); !errors.Is(err, overlay.ErrNotFound) {
		t.Errorf("%s in the task: got %v, want %v", overlay.GatewayIfname, err, overlay.ErrNotFound)
	}
}
