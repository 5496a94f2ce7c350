package overlay_test

import (
	"errors"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/shoal-dev/shoal/overlay"
	"github.com/shoal-dev/shoal/overlay/overlaytest"
)

var epC = overlay.Endpoint{TaskID: "taskC", NetworkID: "net1", Addr: netip.MustParsePrefix("10.1.0.5/24"), Netns: "/run/netns/c"}

func gwPeerOf(veth string) string { return "shp" + strings.TrimPrefix(veth, "shg") }

// gwOf returns the gateway link of the task namespace at netns: its address and next hop.
func gwOf(t *testing.T, f *overlaytest.Fake, netns string) (overlay.Iface, bool) {
	t.Helper()
	got, err := f.Iface(netns, overlay.GatewayIfname)
	if errors.Is(err, overlay.ErrNotFound) {
		return got, false
	}
	if err != nil {
		t.Fatalf("Iface(%s, %s): %v", netns, overlay.GatewayIfname, err)
	}
	return got, true
}

func assertGwAddr(t *testing.T, f *overlaytest.Fake, netns, want string) {
	t.Helper()
	got, ok := gwOf(t, f, netns)
	if !ok {
		t.Fatalf("%s: no %s", netns, overlay.GatewayIfname)
	}
	if w := []netip.Prefix{netip.MustParsePrefix(want)}; !slices.Equal(got.Addrs, w) {
		t.Errorf("%s: gateway link addresses: got %v, want %v", netns, got.Addrs, w)
	}
	if got.Gateway != netip.MustParseAddr("172.18.0.1") {
		t.Errorf("%s: default route via %v, want 172.18.0.1", netns, got.Gateway)
	}
}

func TestGatewayCreates(t *testing.T) {
	p, f, rec := setup(t)
	d := overlay.Desired{Networks: []overlay.Network{net1}, Endpoints: []overlay.Endpoint{epA}, Gateway: true}
	reconcile(t, p, d)

	vA, gA := p.VethName(epA.TaskID, epA.NetworkID), p.GatewayVethName(epA.TaskID)
	assertCalls(t, rec,
		"AddBridge shb4097 mtu=1450",
		"AddVXLAN shv4097 vni=4097 local=10.0.0.1 port=4789 learning=false mtu=1450 master=shb4097",
		"AddVeth "+vA+" master=shb4097 peer=/run/netns/a:"+peerOf(vA)+" mtu=1450",
		"ConfigureIface /run/netns/a:"+peerOf(vA)+" name=eth0 mac="+macA+" mtu=1450 addrs=[10.1.0.2/24] up=true",
		"AddBridge shgw0 mtu=1500",
		"AddLinkAddr shgw0 172.18.0.1/16",
		"AddVeth "+gA+" master=shgw0 peer=/run/netns/a:"+gwPeerOf(gA)+" mtu=1500",
		"SetIsolated "+gA,
		"ConfigureIface /run/netns/a:"+gwPeerOf(gA)+" name=gw0 mac=02:42:ac:12:00:02 mtu=1500 addrs=[172.18.0.2/16] up=true gw=172.18.0.1",
	)
	if got, want := f.NetnsIfaces(epA.Netns), []string{"eth0", "gw0"}; !slices.Equal(got, want) {
		t.Errorf("links in task netns: got %v, want %v", got, want)
	}
	if eth0, _ := f.Iface(epA.Netns, "eth0"); eth0.Gateway.IsValid() {
		t.Errorf("eth0 carries the default route via %v, want none (the overlay stays on-link)", eth0.Gateway)
	}
	if !f.Isolated(gA) {
		t.Errorf("gateway veth %s is not an isolated bridge port", gA)
	}
	for _, name := range []string{"shgw0", gA} {
		if len(name) > 15 {
			t.Errorf("link name %q longer than 15", name)
		}
	}

	reconcile(t, p, d)
	assertCalls(t, rec)
	restarted := overlay.New(overlay.Config{VTEP: vtep, Prefix: "sh", UnderlayMTU: 1500}, rec)
	reconcile(t, restarted, d)
	assertCalls(t, rec)
}

func TestGatewayAddresses(t *testing.T) {
	p, f, rec := setup(t)
	f.AddNetns(epC.Netns)
	a2 := overlay.Endpoint{TaskID: "taskA", NetworkID: "net2", Addr: netip.MustParsePrefix("10.2.0.2/24"), Netns: epA.Netns, Ifname: "eth1"}
	nets := []overlay.Network{net1, net2}

	// One link per task, however many networks it is on; addresses in task ID order.
	reconcile(t, p, overlay.Desired{Networks: nets, Endpoints: []overlay.Endpoint{epB, a2, epA}, Gateway: true})
	assertGwAddr(t, f, epA.Netns, "172.18.0.2/16")
	assertGwAddr(t, f, epB.Netns, "172.18.0.3/16")
	if got, want := f.NetnsIfaces(epA.Netns), []string{"eth0", "eth1", "gw0"}; !slices.Equal(got, want) {
		t.Errorf("links in task A: got %v, want %v", got, want)
	}

	// A leaves: its link goes, B keeps its address; C, new, gets the lowest free.
	rec.Reset()
	reconcile(t, p, overlay.Desired{Networks: nets, Endpoints: []overlay.Endpoint{epB, epC}, Gateway: true})
	gA, gC := p.GatewayVethName(epA.TaskID), p.GatewayVethName(epC.TaskID)
	if calls := rec.Calls(); !slices.Contains(calls, "DeleteLink "+gA) {
		t.Errorf("calls %v: no DeleteLink %s", calls, gA)
	}
	assertGwAddr(t, f, epB.Netns, "172.18.0.3/16")
	assertGwAddr(t, f, epC.Netns, "172.18.0.2/16")
	if slices.Contains(f.LinkNames(), gA) || !slices.Contains(f.LinkNames(), gC) {
		t.Errorf("host links: got %v, want %s and not %s", f.LinkNames(), gC, gA)
	}
}

func TestGatewayRemoves(t *testing.T) {
	tests := []struct {
		name string
		d    overlay.Desired
	}{
		{"no gateway wanted", overlay.Desired{Networks: []overlay.Network{net1}, Endpoints: []overlay.Endpoint{epA, epB}}},
		{"no task left", overlay.Desired{Networks: []overlay.Network{net1}, Gateway: true}},
		{"only a host address", overlay.Desired{Networks: []overlay.Network{withHost(net1, "10.1.0.254/24")}, Gateway: true}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, f, rec := setup(t)
			reconcile(t, p, overlay.Desired{Networks: []overlay.Network{net1}, Endpoints: []overlay.Endpoint{epA, epB}, Gateway: true})
			rec.Reset()
			gA, gB := p.GatewayVethName(epA.TaskID), p.GatewayVethName(epB.TaskID)

			reconcile(t, p, tt.d)
			var gwCalls []string
			for _, c := range rec.Calls() {
				if strings.Contains(c, "shg") {
					gwCalls = append(gwCalls, c)
				}
			}
			if want := []string{"DeleteLink " + min(gA, gB), "DeleteLink " + max(gA, gB), "DeleteLink shgw0"}; !slices.Equal(gwCalls, want) {
				t.Errorf("gateway calls: got %v, want %v", gwCalls, want)
			}
			for _, name := range f.LinkNames() {
				if strings.HasPrefix(name, "shg") {
					t.Errorf("gateway link %s left", name)
				}
			}
			for _, ns := range []string{epA.Netns, epB.Netns} {
				if _, ok := gwOf(t, f, ns); ok {
					t.Errorf("%s: %s left", ns, overlay.GatewayIfname)
				}
			}
			rec.Reset()
			reconcile(t, p, tt.d)
			assertCalls(t, rec)
		})
	}
}

func withHost(n overlay.Network, addr string) overlay.Network {
	n.HostAddr = netip.MustParsePrefix(addr)
	return n
}

func TestGatewayRepairs(t *testing.T) {
	d := overlay.Desired{Networks: []overlay.Network{net1}, Endpoints: []overlay.Endpoint{epA}, Gateway: true}
	tests := []struct {
		name  string
		drift func(t *testing.T, f *overlaytest.Fake, gA string)
		calls func(gA string) []string
	}{{
		name: "veth detached",
		drift: func(t *testing.T, f *overlaytest.Fake, gA string) {
			f.Modify(gA, func(l *overlay.Link) { l.MasterIndex = 0 })
		},
		calls: func(gA string) []string { return []string{"SetMaster " + gA + " shgw0", "SetIsolated " + gA} },
	}, {
		name: "bridge down",
		drift: func(t *testing.T, f *overlaytest.Fake, gA string) {
			f.Modify("shgw0", func(l *overlay.Link) { l.Up = false })
		},
		calls: func(gA string) []string { return []string{"SetUp shgw0"} },
	}, {
		name: "bridge address gone",
		drift: func(t *testing.T, f *overlaytest.Fake, gA string) {
			mustOK(t, f.DeleteLinkAddr("shgw0", netip.MustParsePrefix("172.18.0.1/16")))
			mustOK(t, f.AddLinkAddr("shgw0", netip.MustParsePrefix("172.18.9.9/16")))
		},
		calls: func(gA string) []string {
			return []string{"DeleteLinkAddr shgw0 172.18.9.9/16", "AddLinkAddr shgw0 172.18.0.1/16"}
		},
	}, {
		name: "default route gone",
		drift: func(t *testing.T, f *overlaytest.Fake, gA string) {
			f.ModifyIface(epA.Netns, "gw0", func(i *overlay.Iface) { i.Gateway = netip.Addr{} })
		},
		calls: func(gA string) []string {
			return []string{
				"DeleteLink " + gA,
				"AddVeth " + gA + " master=shgw0 peer=/run/netns/a:" + gwPeerOf(gA) + " mtu=1500",
				"SetIsolated " + gA,
				"ConfigureIface /run/netns/a:" + gwPeerOf(gA) + " name=gw0 mac=02:42:ac:12:00:02 mtu=1500 addrs=[172.18.0.2/16] up=true gw=172.18.0.1",
			}
		},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, f, rec := setup(t)
			reconcile(t, p, d)
			rec.Reset()
			gA := p.GatewayVethName(epA.TaskID)
			tt.drift(t, f, gA)

			reconcile(t, p, d)
			assertCalls(t, rec, tt.calls(gA)...)
			if !f.Isolated(gA) {
				t.Errorf("gateway veth %s not isolated after repair", gA)
			}
			reconcile(t, p, d)
			assertCalls(t, rec)
		})
	}
}

func TestGatewayFailedLinkIsUndone(t *testing.T) {
	p, f, rec := setup(t)
	d := overlay.Desired{Networks: []overlay.Network{net1}, Endpoints: []overlay.Endpoint{epA}, Gateway: true}
	reconcile(t, p, overlay.Desired{Networks: []overlay.Network{net1}, Endpoints: []overlay.Endpoint{epA}})
	rec.Reset()
	boom := errors.New("boom")
	f.FailNext("ConfigureIface", boom)
	if err := p.Reconcile(d); !errors.Is(err, boom) {
		t.Fatalf("Reconcile: got %v, want %v", err, boom)
	}
	gA := p.GatewayVethName(epA.TaskID)
	if slices.Contains(f.LinkNames(), gA) {
		t.Errorf("gateway veth %s of the failed link left behind", gA)
	}
	reconcile(t, p, d)
	assertGwAddr(t, f, epA.Netns, "172.18.0.2/16")
}

func TestGatewayIfnameTaken(t *testing.T) {
	p, _, _ := setup(t)
	bad := epA
	bad.Ifname = overlay.GatewayIfname
	err := p.Reconcile(overlay.Desired{Networks: []overlay.Network{net1}, Endpoints: []overlay.Endpoint{bad}, Gateway: true})
	if !errors.Is(err, overlay.ErrInvalid) {
		t.Errorf("endpoint named %s with a gateway: got %v, want %v", overlay.GatewayIfname, err, overlay.ErrInvalid)
	}
}

func TestGatewayClose(t *testing.T) {
	p, f, rec := setup(t)
	reconcile(t, p, overlay.Desired{Networks: []overlay.Network{net1}, Endpoints: []overlay.Endpoint{epA}, Gateway: true})
	rec.Reset()
	f.DeleteNetns(epA.Netns) // the kernel takes both veths with the namespace
	if err := p.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	assertCalls(t, rec, "DeleteLink shb4097", "DeleteLink shgw0", "DeleteLink shv4097")
	if got := f.LinkNames(); len(got) != 0 {
		t.Errorf("host links after Close: got %v, want none", got)
	}
}

// A task namespace on no network gets the gateway link when listed in GatewayOnly (host-mode
// ports), and TaskGatewayAddr reads its address back; it goes when no longer listed.
func TestGatewayOnly(t *testing.T) {
	p, f, _ := setup(t)
	only := overlay.GatewayTask{TaskID: "taskB", Netns: epB.Netns}
	reconcile(t, p, overlay.Desired{Networks: []overlay.Network{net1}, Endpoints: []overlay.Endpoint{epA}, Gateway: true,
		GatewayOnly: []overlay.GatewayTask{only}})
	assertGwAddr(t, f, epA.Netns, "172.18.0.2/16")
	assertGwAddr(t, f, epB.Netns, "172.18.0.3/16")
	if got, err := p.TaskGatewayAddr(epB.Netns); err != nil || got != netip.MustParseAddr("172.18.0.3") {
		t.Errorf("TaskGatewayAddr(%s) = %v, %v; want 172.18.0.3", epB.Netns, got, err)
	}
	if _, ok := gwOf(t, f, epB.Netns); !ok {
		t.Fatal("no gateway link for the gateway-only task")
	}
	// Alone, without any network.
	reconcile(t, p, overlay.Desired{Gateway: true, GatewayOnly: []overlay.GatewayTask{only}})
	assertGwAddr(t, f, epB.Netns, "172.18.0.3/16")
	if _, ok := gwOf(t, f, epA.Netns); ok {
		t.Error("task A kept its gateway link after it left")
	}
	reconcile(t, p, overlay.Desired{Gateway: true})
	if _, ok := gwOf(t, f, epB.Netns); ok {
		t.Error("gateway link kept once the task is no longer listed")
	}
	if _, err := p.TaskGatewayAddr(epB.Netns); err == nil {
		t.Error("TaskGatewayAddr found an address on a removed link")
	}
}
