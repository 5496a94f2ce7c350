package lb

import (
	"net/netip"
	"slices"
	"testing"

	"github.com/google/nftables"
)

// foreignIngress builds table shoal_ingress in path as an older agent did: the same rules,
// no digest.
func foreignIngress(t *testing.T, path string, ports []PublishedPort) {
	t.Helper()
	norm, err := normalizePorts(ports)
	if err != nil {
		t.Fatal(err)
	}
	err = withConn(path, func(c *nftables.Conn) error {
		if err := addIngressTable(c, norm, netip.MustParsePrefix("10.255.0.0/16"), ""); err != nil {
			return err
		}
		return c.Flush()
	})
	if err != nil {
		t.Fatalf("foreign table: %v", err)
	}
}

func TestIngressDigest(t *testing.T) {
	subnet := netip.MustParsePrefix("10.255.0.0/16")
	a := []PublishedPort{{Published: 8080, Target: 80, Backends: addrs("10.255.0.5", "10.255.0.6")}}
	tests := []struct {
		name  string
		other []PublishedPort
		same  bool
	}{
		{"backends in another order, protocol spelled out", []PublishedPort{{Protocol: "tcp", Published: 8080, Target: 80, Backends: addrs("10.255.0.6", "10.255.0.5")}}, true},
		{"one backend fewer", []PublishedPort{{Published: 8080, Target: 80, Backends: addrs("10.255.0.5")}}, false},
		{"another target", []PublishedPort{{Published: 8080, Target: 81, Backends: addrs("10.255.0.5", "10.255.0.6")}}, false},
		{"udp", []PublishedPort{{Protocol: "udp", Published: 8080, Target: 80, Backends: addrs("10.255.0.5", "10.255.0.6")}}, false},
	}
	da, err := IngressDigest(a, subnet)
	if err != nil || da == "" {
		t.Fatalf("got %q, %v, want a digest", da, err)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			db, err := IngressDigest(tt.other, subnet)
			if err != nil {
				t.Fatal(err)
			}
			if (da == db) != tt.same {
				t.Errorf("got digests %s and %s, want equal: %t", da, db, tt.same)
			}
		})
	}
	if d, err := IngressDigest(nil, subnet); err != nil || d != "" {
		t.Errorf("no ports: got %q, %v, want no digest", d, err)
	}
}

// TestSyncIngress: the table follows the desired state whoever changed it last, and is
// rewritten only when it differs.
func TestSyncIngress(t *testing.T) {
	path := newNetns(t)
	subnet := netip.MustParsePrefix("10.255.0.0/16")
	ports := []PublishedPort{
		{Published: 8080, Target: 80, Backends: addrs("10.255.0.5")},
		{Protocol: "udp", Published: 5353, Target: 53},
	}
	digest, _ := IngressDigest(ports, subnet)
	sync := func(step string, ports []PublishedPort, wantChanged bool) {
		t.Helper()
		changed, err := SyncIngress(path, ports, subnet)
		if err != nil || changed != wantChanged {
			t.Fatalf("%s: got changed %t, %v, want %t", step, changed, err, wantChanged)
		}
	}
	sync("first", ports, true)
	st, err := ReadIngress(path)
	if err != nil || !st.Present || st.Digest != digest {
		t.Fatalf("got %+v, %v, want the table with digest %s", st, err, digest)
	}
	if got := slices.Sorted(slices.Values(st.Ports)); !slices.Equal(got, []uint16{5353, 8080}) {
		t.Errorf("got ports %v, want [5353 8080]", got)
	}
	sync("same state", ports, false)

	// A table this code did not build from this state is replaced.
	foreignIngress(t, path, []PublishedPort{{Published: 2377, Target: 80}})
	sync("after a foreign table", ports, true)
	if st, _ := ReadIngress(path); st.Digest != digest || slices.Contains(st.Ports, 2377) {
		t.Errorf("got %+v, want the desired table back", st)
	}

	sync("nothing published", nil, true)
	if st, _ := ReadIngress(path); st.Present {
		t.Errorf("table left with nothing published: %+v", st)
	}
	sync("nothing published again", nil, false)
}

func TestDropStaleIngress(t *testing.T) {
	own := map[uint16]string{2377: "the API port"}
	subnet := netip.MustParsePrefix("10.255.0.0/16")
	tests := []struct {
		name        string
		setup       func(t *testing.T, path string)
		wantDropped bool
	}{
		{"no table", func(*testing.T, string) {}, false},
		{"a table built from cluster state", func(t *testing.T, path string) {
			if err := ApplyIngress(path, []PublishedPort{{Published: 8080, Target: 80}}, subnet); err != nil {
				t.Fatal(err)
			}
		}, false},
		{"a table without a digest", func(t *testing.T, path string) {
			foreignIngress(t, path, []PublishedPort{{Published: 8080, Target: 80}})
		}, true},
		{"a table on the node's own port", func(t *testing.T, path string) {
			if err := ApplyIngress(path, []PublishedPort{{Published: 2377, Target: 80}}, subnet); err != nil {
				t.Fatal(err)
			}
		}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := newNetns(t)
			tt.setup(t, path)
			before, _ := ReadIngress(path)
			dropped, reason, err := DropStaleIngress(path, own)
			if err != nil || dropped != tt.wantDropped || (dropped && reason == "") {
				t.Fatalf("got dropped %t (%q), %v, want %t with a reason", dropped, reason, err, tt.wantDropped)
			}
			after, _ := ReadIngress(path)
			if after.Present != (before.Present && !tt.wantDropped) {
				t.Errorf("table present: before %t, after %t", before.Present, after.Present)
			}
		})
	}
}
