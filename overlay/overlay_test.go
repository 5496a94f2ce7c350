package overlay_test

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/shoal-dev/shoal/overlay"
	"github.com/shoal-dev/shoal/overlay/overlaytest"
)

var (
	vtep = netip.MustParseAddr("10.0.0.1")
	net1 = overlay.Network{ID: "net1", VNI: 4097, Subnet: netip.MustParsePrefix("10.1.0.0/24"), Gateway: netip.MustParseAddr("10.1.0.1")}
	net2 = overlay.Network{ID: "net2", VNI: 4098, Subnet: netip.MustParsePrefix("10.2.0.0/24"), Gateway: netip.MustParseAddr("10.2.0.1")}
	epA  = overlay.Endpoint{TaskID: "taskA", NetworkID: "net1", Addr: netip.MustParsePrefix("10.1.0.2/24"), Netns: "/run/netns/a"}
	epB  = overlay.Endpoint{TaskID: "taskB", NetworkID: "net1", Addr: netip.MustParsePrefix("10.1.0.3/24"), Netns: "/run/netns/b"}
	peer = overlay.Peer{NetworkID: "net1", Addr: netip.MustParseAddr("10.1.0.4"), VTEP: netip.MustParseAddr("10.0.0.2")}

	macA = "02:42:0a:01:00:02"
	macB = "02:42:0a:01:00:03"
	macP = "02:42:0a:01:00:04"
)

// setup returns a Plane over a recorded Fake with the task namespaces of epA and epB.
func setup(t *testing.T) (*overlay.Plane, *overlaytest.Fake, *overlaytest.Recorder) {
	t.Helper()
	f := overlaytest.NewFake()
	f.AddNetns(epA.Netns)
	f.AddNetns(epB.Netns)
	rec := overlaytest.NewRecorder(f)
	return overlay.New(overlay.Config{VTEP: vtep, Prefix: "sh"}, rec), f, rec
}

func reconcile(t *testing.T, p *overlay.Plane, d overlay.Desired) {
	t.Helper()
	if err := p.Reconcile(d); err != nil {
		t.Fatalf("Reconcile: %v", err)
	}
}

func assertCalls(t *testing.T, rec *overlaytest.Recorder, want ...string) {
	t.Helper()
	got := rec.Calls()
	if !slices.Equal(got, want) {
		t.Errorf("calls:\n got %s\nwant %s", strings.Join(got, "\n     "), strings.Join(want, "\n     "))
	}
	rec.Reset()
}

func peerOf(veth string) string { return "shp" + strings.TrimPrefix(veth, "she") }

func TestReconcileCreates(t *testing.T) {
	p, f, rec := setup(t)
	reconcile(t, p, overlay.Desired{Networks: []overlay.Network{net1, net2}, Endpoints: []overlay.Endpoint{epA}, Peers: []overlay.Peer{peer}})

	vA := p.VethName(epA.TaskID, epA.NetworkID)
	assertCalls(t, rec,
		"AddBridge shb4097 mtu=1450",
		"AddVXLAN shv4097 vni=4097 local=10.0.0.1 port=4789 learning=false mtu=1450 master=shb4097",
		"SetFDB shv4097 "+macP+" -> 10.0.0.2",
		"AddVeth "+vA+" master=shb4097 peer=/run/netns/a:"+peerOf(vA)+" mtu=1450",
		"ConfigureIface /run/netns/a:"+peerOf(vA)+" name=eth0 mac="+macA+" mtu=1450 addrs=[10.1.0.2/24] up=true",
		"SetNeighbor /run/netns/a:eth0 10.1.0.4 "+macP,
	)
	if got, want := f.LinkNames(), []string{"shb4097", vA, "shv4097"}; !slices.Equal(got, want) {
		t.Errorf("host links: got %v, want %v (no bridge for net2, which has no local task)", got, want)
	}
	if got, want := f.NetnsIfaces(epA.Netns), []string{"eth0"}; !slices.Equal(got, want) {
		t.Errorf("links in task netns: got %v, want %v", got, want)
	}
	for _, name := range []string{"shb4097", vA, "shv4097"} {
		if len(name) > 15 {
			t.Errorf("link name %q longer than 15", name)
		}
	}
}

func TestReconcileIdempotent(t *testing.T) {
	p, f, rec := setup(t)
	d := overlay.Desired{Networks: []overlay.Network{net1}, Endpoints: []overlay.Endpoint{epA, epB}, Peers: []overlay.Peer{peer}}
	reconcile(t, p, d)
	rec.Reset()

	reconcile(t, p, d)
	assertCalls(t, rec)

	// An agent restart: a new Plane finds what the old one made.
	restarted := overlay.New(overlay.Config{VTEP: vtep, Prefix: "sh", UnderlayMTU: 1500}, rec)
	reconcile(t, restarted, d)
	assertCalls(t, rec)

	if got, want := f.NeighborsOf(epA.Netns, "eth0"), []string{"10.1.0.3 " + macB, "10.1.0.4 " + macP}; !slices.Equal(got, want) {
		t.Errorf("neighbours of task A: got %v, want %v", got, want)
	}
	if got, want := f.FDBOf("shv4097"), []string{macP + " -> 10.0.0.2"}; !slices.Equal(got, want) {
		t.Errorf("fdb: got %v, want %v", got, want)
	}
}

func TestReconcileRemoves(t *testing.T) {
	full := overlay.Desired{Networks: []overlay.Network{net1}, Endpoints: []overlay.Endpoint{epA, epB}, Peers: []overlay.Peer{peer}}
	moved := peer
	moved.VTEP = netip.MustParseAddr("10.0.0.3")
	tests := []struct {
		name  string
		d     overlay.Desired
		calls func(vA, vB string) []string
		links func(vA, vB string) []string
	}{{
		name: "peer gone",
		d:    overlay.Desired{Networks: []overlay.Network{net1}, Endpoints: []overlay.Endpoint{epA, epB}},
		calls: func(vA, vB string) []string {
			return []string{
				"DeleteFDB shv4097 " + macP + " -> 10.0.0.2",
				"DeleteNeighbor /run/netns/" + first(vA, vB, "a", "b") + ":eth0 10.1.0.4 " + macP,
				"DeleteNeighbor /run/netns/" + first(vA, vB, "b", "a") + ":eth0 10.1.0.4 " + macP,
			}
		},
		links: func(vA, vB string) []string { return sorted("shb4097", "shv4097", vA, vB) },
	}, {
		name: "peer moved to another node",
		d:    overlay.Desired{Networks: []overlay.Network{net1}, Endpoints: []overlay.Endpoint{epA, epB}, Peers: []overlay.Peer{moved}},
		calls: func(vA, vB string) []string {
			return []string{
				"DeleteFDB shv4097 " + macP + " -> 10.0.0.2",
				"SetFDB shv4097 " + macP + " -> 10.0.0.3",
			}
		},
		links: func(vA, vB string) []string { return sorted("shb4097", "shv4097", vA, vB) },
	}, {
		name: "endpoint gone",
		d:    overlay.Desired{Networks: []overlay.Network{net1}, Endpoints: []overlay.Endpoint{epA}, Peers: []overlay.Peer{peer}},
		calls: func(vA, vB string) []string {
			return []string{"DeleteLink " + vB, "DeleteNeighbor /run/netns/a:eth0 10.1.0.3 " + macB}
		},
		links: func(vA, vB string) []string { return sorted("shb4097", "shv4097", vA) },
	}, {
		name: "last endpoint gone",
		d:    overlay.Desired{Networks: []overlay.Network{net1}, Peers: []overlay.Peer{peer}},
		calls: func(vA, vB string) []string {
			return []string{"DeleteLink " + min(vA, vB), "DeleteLink " + max(vA, vB), "DeleteLink shv4097", "DeleteLink shb4097"}
		},
		links: func(vA, vB string) []string { return nil },
	}, {
		name: "network gone",
		d:    overlay.Desired{},
		calls: func(vA, vB string) []string {
			return []string{"DeleteLink " + min(vA, vB), "DeleteLink " + max(vA, vB), "DeleteLink shv4097", "DeleteLink shb4097"}
		},
		links: func(vA, vB string) []string { return nil },
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, f, rec := setup(t)
			reconcile(t, p, full)
			rec.Reset()
			vA, vB := p.VethName(epA.TaskID, epA.NetworkID), p.VethName(epB.TaskID, epB.NetworkID)

			reconcile(t, p, tt.d)
			assertCalls(t, rec, tt.calls(vA, vB)...)
			if got, want := f.LinkNames(), tt.links(vA, vB); !slices.Equal(got, want) {
				t.Errorf("host links: got %v, want %v", got, want)
			}
			reconcile(t, p, tt.d)
			assertCalls(t, rec)
		})
	}
}

// first returns x if a sorts before b, else y: the order of two endpoints' hashed names.
func first(a, b, x, y string) string {
	if a < b {
		return x
	}
	return y
}

func sorted(s ...string) []string {
	slices.Sort(s)
	return s
}

func TestReconcileRepairs(t *testing.T) {
	d := overlay.Desired{Networks: []overlay.Network{net1}, Endpoints: []overlay.Endpoint{epA}, Peers: []overlay.Peer{peer}}
	tests := []struct {
		name  string
		drift func(f *overlaytest.Fake, vA string)
		calls func(vA string) []string
	}{{
		name:  "vxlan detached",
		drift: func(f *overlaytest.Fake, vA string) { f.Modify("shv4097", func(l *overlay.Link) { l.MasterIndex = 0 }) },
		calls: func(vA string) []string { return []string{"SetMaster shv4097 shb4097"} },
	}, {
		name:  "veth down",
		drift: func(f *overlaytest.Fake, vA string) { f.Modify(vA, func(l *overlay.Link) { l.Up = false }) },
		calls: func(vA string) []string { return []string{"SetUp " + vA} },
	}, {
		name: "bridge deleted",
		drift: func(f *overlaytest.Fake, vA string) {
			if err := f.DeleteLink("shb4097"); err != nil {
				t.Fatal(err)
			}
		},
		calls: func(vA string) []string {
			return []string{"AddBridge shb4097 mtu=1450", "SetMaster shv4097 shb4097", "SetMaster " + vA + " shb4097"}
		},
	}, {
		name: "vxlan learning",
		drift: func(f *overlaytest.Fake, vA string) {
			f.Modify("shv4097", func(l *overlay.Link) { l.VXLAN.Learning = true })
		},
		calls: func(vA string) []string {
			return []string{
				"DeleteLink shv4097",
				"AddVXLAN shv4097 vni=4097 local=10.0.0.1 port=4789 learning=false mtu=1450 master=shb4097",
				"SetFDB shv4097 " + macP + " -> 10.0.0.2",
			}
		},
	}, {
		name: "task address changed",
		drift: func(f *overlaytest.Fake, vA string) {
			f.ModifyIface(epA.Netns, "eth0", func(i *overlay.Iface) { i.Addrs = []netip.Prefix{netip.MustParsePrefix("10.1.0.9/24")} })
		},
		calls: func(vA string) []string {
			return []string{
				"DeleteLink " + vA,
				"AddVeth " + vA + " master=shb4097 peer=/run/netns/a:" + peerOf(vA) + " mtu=1450",
				"ConfigureIface /run/netns/a:" + peerOf(vA) + " name=eth0 mac=" + macA + " mtu=1450 addrs=[10.1.0.2/24] up=true",
				"SetNeighbor /run/netns/a:eth0 10.1.0.4 " + macP,
			}
		},
	}, {
		name: "task end half made",
		drift: func(f *overlaytest.Fake, vA string) {
			f.ModifyIface(epA.Netns, "eth0", func(i *overlay.Iface) { i.Up = false })
		},
		calls: func(vA string) []string {
			return []string{
				"DeleteLink " + vA,
				"AddVeth " + vA + " master=shb4097 peer=/run/netns/a:" + peerOf(vA) + " mtu=1450",
				"ConfigureIface /run/netns/a:" + peerOf(vA) + " name=eth0 mac=" + macA + " mtu=1450 addrs=[10.1.0.2/24] up=true",
				"SetNeighbor /run/netns/a:eth0 10.1.0.4 " + macP,
			}
		},
	}, {
		name: "leftovers with our names",
		drift: func(f *overlaytest.Fake, vA string) {
			f.PutLink(overlay.Link{Name: "she0123456789ab", Kind: "veth"})
			f.PutLink(overlay.Link{Name: "shb9", Kind: "bridge"})
			f.PutLink(overlay.Link{Name: "shv9", Kind: "vxlan"})
			f.PutLink(overlay.Link{Name: "shb10", Kind: "dummy"})
			f.PutLink(overlay.Link{Name: "shell", Kind: "dummy"}) // not a name we make
		},
		calls: func(vA string) []string {
			return []string{"DeleteLink shb10", "DeleteLink she0123456789ab", "DeleteLink shv9", "DeleteLink shb9"}
		},
	}, {
		name: "stray and wrong neighbours and fdb entries",
		drift: func(f *overlaytest.Fake, vA string) {
			mustOK(t, f.SetNeighbor(epA.Netns, "eth0", overlay.Neighbor{IP: netip.MustParseAddr("10.1.0.99"), MAC: overlaytest.MAC("02:42:0a:01:00:63")}))
			mustOK(t, f.SetNeighbor(epA.Netns, "eth0", overlay.Neighbor{IP: peer.Addr, MAC: overlaytest.MAC("02:00:00:00:00:01")}))
			f.PutFDB("shv4097", overlay.FDBEntry{MAC: overlaytest.MAC("02:42:0a:01:00:63"), VTEP: netip.MustParseAddr("10.0.0.9")})
		},
		calls: func(vA string) []string {
			return []string{
				"DeleteFDB shv4097 02:42:0a:01:00:63 -> 10.0.0.9",
				"DeleteNeighbor /run/netns/a:eth0 10.1.0.99 02:42:0a:01:00:63",
				"SetNeighbor /run/netns/a:eth0 10.1.0.4 " + macP,
			}
		},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, f, rec := setup(t)
			reconcile(t, p, d)
			rec.Reset()
			vA := p.VethName(epA.TaskID, epA.NetworkID)

			tt.drift(f, vA)
			reconcile(t, p, d)
			assertCalls(t, rec, tt.calls(vA)...)
			reconcile(t, p, d)
			assertCalls(t, rec)
			if got, want := f.LinkNames(), sorted("shb4097", "shv4097", vA, "shell"); tt.name == "leftovers with our names" && !slices.Equal(got, want) {
				t.Errorf("host links: got %v, want %v", got, want)
			}
		})
	}
}

func mustOK(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func TestReconcileFailedEndpointIsUndone(t *testing.T) {
	p, f, rec := setup(t)
	d := overlay.Desired{Networks: []overlay.Network{net1}, Endpoints: []overlay.Endpoint{epA, epB}}
	vA, vB := p.VethName(epA.TaskID, epA.NetworkID), p.VethName(epB.TaskID, epB.NetworkID)
	boom := errors.New("boom")
	f.FailNext("ConfigureIface", boom)

	err := p.Reconcile(d)
	if !errors.Is(err, boom) {
		t.Fatalf("Reconcile: got %v, want %v", err, boom)
	}
	failed, ok := min(vA, vB), max(vA, vB) // endpoints are made in name order
	if slices.Contains(f.LinkNames(), failed) {
		t.Errorf("veth %s of the failed endpoint left behind", failed)
	}
	if !slices.Contains(f.LinkNames(), ok) {
		t.Errorf("veth %s of the other endpoint not made", ok)
	}
	if !slices.Contains(rec.Calls(), "DeleteLink "+failed) {
		t.Errorf("calls %v: no DeleteLink %s", rec.Calls(), failed)
	}
	rec.Reset()

	reconcile(t, p, d)
	if got := f.LinkNames(); !slices.Contains(got, failed) {
		t.Errorf("host links after retry: got %v, want %s among them", got, failed)
	}
	rec.Reset()
	reconcile(t, p, d)
	assertCalls(t, rec)
}

func TestReconcileTaskNetnsGone(t *testing.T) {
	p, f, rec := setup(t)
	reconcile(t, p, overlay.Desired{Networks: []overlay.Network{net1}, Endpoints: []overlay.Endpoint{epA, epB}})
	rec.Reset()

	f.DeleteNetns(epB.Netns) // the task's container went away; the kernel took the veth with it
	err := p.Reconcile(overlay.Desired{Networks: []overlay.Network{net1}, Endpoints: []overlay.Endpoint{epA, epB}})
	if err == nil || !strings.Contains(err.Error(), epB.Netns) {
		t.Errorf("Reconcile with a gone netns: got %v, want an error naming %s", err, epB.Netns)
	}
	rec.Reset()

	reconcile(t, p, overlay.Desired{Networks: []overlay.Network{net1}, Endpoints: []overlay.Endpoint{epA}})
	assertCalls(t, rec, "DeleteNeighbor /run/netns/a:eth0 10.1.0.3 "+macB)
}

func TestReconcileTaskOnTwoNetworks(t *testing.T) {
	p, f, _ := setup(t)
	a2 := overlay.Endpoint{TaskID: "taskA", NetworkID: "net2", Addr: netip.MustParsePrefix("10.2.0.2/24"), Netns: epA.Netns, Ifname: "eth1"}
	b2 := overlay.Endpoint{TaskID: "taskB", NetworkID: "net2", Addr: netip.MustParsePrefix("10.2.0.3/24"), Netns: epB.Netns, Ifname: "eth1"}
	reconcile(t, p, overlay.Desired{
		Networks:  []overlay.Network{net1, net2},
		Endpoints: []overlay.Endpoint{epA, a2, b2},
		Peers:     []overlay.Peer{peer},
	})
	if got, want := f.NetnsIfaces(epA.Netns), []string{"eth0", "eth1"}; !slices.Equal(got, want) {
		t.Errorf("links in task A: got %v, want %v", got, want)
	}
	if got, want := f.NeighborsOf(epA.Netns, "eth0"), []string{"10.1.0.4 " + macP}; !slices.Equal(got, want) {
		t.Errorf("neighbours of A on net1: got %v, want %v", got, want)
	}
	if got, want := f.NeighborsOf(epA.Netns, "eth1"), []string{"10.2.0.3 02:42:0a:02:00:03"}; !slices.Equal(got, want) {
		t.Errorf("neighbours of A on net2: got %v, want %v", got, want)
	}
	if got := f.FDBOf("shv4098"); len(got) != 0 {
		t.Errorf("fdb of net2: got %v, want none", got)
	}
}

func TestReconcileIgnoresPeersItNeedsNot(t *testing.T) {
	p, _, rec := setup(t)
	self := overlay.Peer{NetworkID: "net1", Addr: netip.MustParseAddr("10.1.0.5"), VTEP: vtep}
	other := overlay.Peer{NetworkID: "net2", Addr: netip.MustParseAddr("10.2.0.5"), VTEP: netip.MustParseAddr("10.0.0.2")}
	unknown := overlay.Peer{NetworkID: "net9", Addr: netip.MustParseAddr("10.9.0.5"), VTEP: netip.MustParseAddr("10.0.0.2")}
	reconcile(t, p, overlay.Desired{Networks: []overlay.Network{net1, net2}, Peers: []overlay.Peer{self, other, unknown}})
	assertCalls(t, rec)

	// A peer claiming a local task's address is stale: no FDB entry sends that MAC away.
	stale := overlay.Peer{NetworkID: "net1", Addr: epA.Addr.Addr(), VTEP: netip.MustParseAddr("10.0.0.2")}
	reconcile(t, p, overlay.Desired{Networks: []overlay.Network{net1}, Endpoints: []overlay.Endpoint{epA}, Peers: []overlay.Peer{stale}})
	for _, c := range rec.Calls() {
		if strings.HasPrefix(c, "SetFDB") || strings.HasPrefix(c, "SetNeighbor") {
			t.Errorf("call %q for a stale peer", c)
		}
	}
}

func TestReconcileInvalid(t *testing.T) {
	outside := epB
	outside.Addr = netip.MustParsePrefix("10.7.0.3/24")
	orphan := epB
	orphan.NetworkID = "nope"
	sameIf := epB
	sameIf.Netns = epA.Netns
	dupVNI := net2
	dupVNI.VNI = net1.VNI
	tests := []struct {
		name string
		d    overlay.Desired
	}{
		{"address outside subnet", overlay.Desired{Networks: []overlay.Network{net1}, Endpoints: []overlay.Endpoint{epA, outside}}},
		{"unknown network", overlay.Desired{Networks: []overlay.Network{net1}, Endpoints: []overlay.Endpoint{epA, orphan}}},
		{"endpoint twice", overlay.Desired{Networks: []overlay.Network{net1}, Endpoints: []overlay.Endpoint{epA, epA}}},
		{"interface twice in a netns", overlay.Desired{Networks: []overlay.Network{net1}, Endpoints: []overlay.Endpoint{epA, sameIf}}},
		{"VNI twice", overlay.Desired{Networks: []overlay.Network{net1, dupVNI}, Endpoints: []overlay.Endpoint{epA}}},
		{"VNI out of range", overlay.Desired{Networks: []overlay.Network{net1, {ID: "big", VNI: 1 << 24, Subnet: net2.Subnet}}, Endpoints: []overlay.Endpoint{epA}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, f, _ := setup(t)
			err := p.Reconcile(tt.d)
			if !errors.Is(err, overlay.ErrInvalid) {
				t.Errorf("Reconcile: got %v, want %v", err, overlay.ErrInvalid)
			}
			// The valid part is applied anyway.
			if got := f.NetnsIfaces(epA.Netns); !slices.Equal(got, []string{"eth0"}) {
				t.Errorf("links in task A: got %v, want [eth0]", got)
			}
		})
	}
}

func TestConfigInvalid(t *testing.T) {
	tests := []struct {
		name string
		cfg  overlay.Config
	}{
		{"prefix too long", overlay.Config{VTEP: vtep, Prefix: "shoal01"}},
		{"no VTEP", overlay.Config{Prefix: "sh"}},
		{"tiny MTU", overlay.Config{VTEP: vtep, UnderlayMTU: 100}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := overlay.New(tt.cfg, overlaytest.NewFake())
			if err := p.Reconcile(overlay.Desired{}); !errors.Is(err, overlay.ErrInvalid) {
				t.Errorf("Reconcile: got %v, want %v", err, overlay.ErrInvalid)
			}
		})
	}
}

func TestUnderlayMTU(t *testing.T) {
	f := overlaytest.NewFake()
	f.AddNetns(epA.Netns)
	rec := overlaytest.NewRecorder(f)
	p := overlay.New(overlay.Config{VTEP: vtep, UnderlayMTU: 9000}, rec)
	reconcile(t, p, overlay.Desired{Networks: []overlay.Network{net1}, Endpoints: []overlay.Endpoint{epA}})
	if got, want := rec.Calls()[0], "AddBridge shb4097 mtu=8950"; got != want {
		t.Errorf("first call: got %q, want %q", got, want)
	}
}

func TestClose(t *testing.T) {
	p, f, rec := setup(t)
	b2 := overlay.Endpoint{TaskID: "taskB", NetworkID: "net2", Addr: netip.MustParsePrefix("10.2.0.3/24"), Netns: epB.Netns}
	reconcile(t, p, overlay.Desired{Networks: []overlay.Network{net1, net2}, Endpoints: []overlay.Endpoint{epA, b2}})
	rec.Reset()
	f.DeleteNetns(epB.Netns) // net2's only task is gone: its bridge is unused

	if err := p.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	assertCalls(t, rec, "DeleteLink shb4098", "DeleteLink shv4098")
	vA := p.VethName(epA.TaskID, epA.NetworkID)
	if got, want := f.LinkNames(), []string{"shb4097", vA, "shv4097"}; !slices.Equal(got, want) {
		t.Errorf("host links after Close: got %v, want %v (a running task's links stay)", got, want)
	}
	if err := p.Reconcile(overlay.Desired{}); !errors.Is(err, overlay.ErrClosed) {
		t.Errorf("Reconcile after Close: got %v, want %v", err, overlay.ErrClosed)
	}
	if err := p.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

func TestNames(t *testing.T) {
	p := overlay.New(overlay.Config{VTEP: vtep, Prefix: "shoal1"}, overlaytest.NewFake())
	names := []string{p.BridgeName(1<<24 - 1), p.VXLANName(1<<24 - 1)}
	seen := map[string]bool{}
	for i := range 1000 {
		v := p.VethName(fmt.Sprintf("task%d", i), "net1")
		if seen[v] {
			t.Fatalf("VethName: %s twice", v)
		}
		seen[v] = true
		names = append(names, v)
	}
	names = append(names, p.VethName("task0", "net2"))
	if seen[names[len(names)-1]] {
		t.Errorf("VethName: same name for a task on two networks")
	}
	for _, n := range names {
		if len(n) > 15 || !strings.HasPrefix(n, "shoal1") {
			t.Errorf("name %q: longer than 15 or without the prefix", n)
		}
	}
}

func TestMACFor(t *testing.T) {
	tests := []struct {
		ip   string
		want string
	}{
		{"10.0.0.2", "02:42:0a:00:00:02"},
		{"192.168.255.1", "02:42:c0:a8:ff:01"},
		{"fd00::a:b0c:d0e", "02:42:0b:0c:0d:0e"},
	}
	for _, tt := range tests {
		if got := overlay.MACFor(netip.MustParseAddr(tt.ip)).String(); got != tt.want {
			t.Errorf("MACFor(%s): got %s, want %s", tt.ip, got, tt.want)
		}
	}
}

func TestReconcileHostAddr(t *testing.T) {
	p, f, rec := setup(t)
	ingress := net1
	ingress.HostAddr = netip.MustParsePrefix("10.1.0.9/24")
	macH := "02:42:0a:01:00:09"
	d := overlay.Desired{Networks: []overlay.Network{ingress}, Peers: []overlay.Peer{peer}}
	reconcile(t, p, d)
	assertCalls(t, rec,
		"AddBridge shb4097 mtu=1450",
		"AddVXLAN shv4097 vni=4097 local=10.0.0.1 port=4789 learning=false mtu=1450 master=shb4097",
		"SetFDB shv4097 "+macP+" -> 10.0.0.2",
		"SetHardwareAddr shb4097 "+macH,
		"AddLinkAddr shb4097 10.1.0.9/24",
		"SetNeighbor :shb4097 10.1.0.4 "+macP,
	)
	reconcile(t, p, d)
	assertCalls(t, rec)

	// A local task gets the host's address as a neighbour; the host gets the task's.
	d.Endpoints = []overlay.Endpoint{epA}
	reconcile(t, p, d)
	if got, want := f.NeighborsOf(epA.Netns, "eth0"), []string{"10.1.0.4 " + macP, "10.1.0.9 " + macH}; !slices.Equal(got, want) {
		t.Errorf("neighbours of task A: got %v, want %v", got, want)
	}
	if got, want := f.NeighborsOf("", "shb4097"), []string{"10.1.0.2 " + macA, "10.1.0.4 " + macP}; !slices.Equal(got, want) {
		t.Errorf("neighbours of the bridge: got %v, want %v", got, want)
	}
	if got, want := f.LinkAddrsOf("shb4097"), []netip.Prefix{ingress.HostAddr}; !slices.Equal(got, want) {
		t.Errorf("bridge addresses: got %v, want %v", got, want)
	}

	// The address goes while the task stays: the bridge keeps no address in the subnet.
	d.Networks = []overlay.Network{net1}
	rec.Reset()
	reconcile(t, p, d)
	assertCalls(t, rec, "DeleteLinkAddr shb4097 10.1.0.9/24", "DeleteNeighbor /run/netns/a:eth0 10.1.0.9 "+macH)

	// Neither task nor address: nothing is left.
	reconcile(t, p, overlay.Desired{Networks: []overlay.Network{ingress}})
	reconcile(t, p, overlay.Desired{Networks: []overlay.Network{net1}})
	if got := f.LinkNames(); len(got) != 0 {
		t.Errorf("host links: got %v, want none", got)
	}

	// An address outside the subnet is refused.
	bad := net1
	bad.HostAddr = netip.MustParsePrefix("10.9.0.9/24")
	if err := p.Reconcile(overlay.Desired{Networks: []overlay.Network{bad}}); !errors.Is(err, overlay.ErrInvalid) {
		t.Errorf("host address outside the subnet: got %v, want ErrInvalid", err)
	}
}
