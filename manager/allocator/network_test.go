package allocator

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"testing"

	"github.com/shoal-dev/shoal/api"
)

func net(id, name, subnet string, vni uint32) *api.Network {
	return &api.Network{ID: id, Spec: api.NetworkSpec{Name: name, Subnet: subnet}, VNI: vni}
}

func TestParseSubnet(t *testing.T) {
	tests := []struct {
		in, want, wantErr string
	}{
		{in: "10.0.1.0/24", want: "10.0.1.0/24"},
		{in: "192.168.0.0/16", want: "192.168.0.0/16"},
		{in: "10.0.1.8/29", want: "10.0.1.8/29"},
		{in: "10.0.1.0/30", wantErr: "subnet too small: 10.0.1.0/30"},
		{in: "10.0.1.1/32", wantErr: "subnet too small"},
		{in: "10.0.1.5/24", wantErr: "10.0.1.5/24 has host bits set: want 10.0.1.0/24"},
		{in: "fd00::/64", wantErr: "only IPv4"},
		{in: "10.0.1.0", wantErr: `"10.0.1.0": want a CIDR`},
		{in: "nope", wantErr: "want a CIDR"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseSubnet(tt.in)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) || !errors.Is(err, ErrBadSubnet) {
					t.Fatalf("got %v, %v, want an ErrBadSubnet holding %q", got, err, tt.wantErr)
				}
				return
			}
			if err != nil || got.String() != tt.want {
				t.Fatalf("got %v, %v, want %s", got, err, tt.want)
			}
		})
	}
}

func TestNewNetwork(t *testing.T) {
	tests := []struct {
		name     string
		spec     api.NetworkSpec
		existing []*api.Network
		want     *api.Network // ID "new"
		wantErr  string
		wantIs   error
	}{
		{
			name: "first network takes the first /24 of the pool and VNI 4097",
			spec: api.NetworkSpec{Name: "appnet"},
			want: &api.Network{ID: "new", Spec: api.NetworkSpec{Name: "appnet", Subnet: "10.10.0.0/24"}, VNI: 4097, Gateway: "10.10.0.1"},
		},
		{
			name:     "skips used subnets and VNIs",
			spec:     api.NetworkSpec{Name: "c", Attachable: true},
			existing: []*api.Network{net("a", "a", "10.10.0.0/24", 4097), net("b", "b", "10.10.2.0/23", 4098), net("d", "d", "10.10.1.0/24", 4100)},
			want:     &api.Network{ID: "new", Spec: api.NetworkSpec{Name: "c", Subnet: "10.10.4.0/24", Attachable: true}, VNI: 4099, Gateway: "10.10.4.1"},
		},
		{
			name:     "a freed subnet and VNI are taken again",
			spec:     api.NetworkSpec{Name: "c"},
			existing: []*api.Network{net("b", "b", "10.10.1.0/24", 4098)},
			want:     &api.Network{ID: "new", Spec: api.NetworkSpec{Name: "c", Subnet: "10.10.0.0/24"}, VNI: 4097, Gateway: "10.10.0.1"},
		},
		{
			name:     "given subnet",
			spec:     api.NetworkSpec{Name: "x", Subnet: "172.20.0.0/16"},
			existing: []*api.Network{net("a", "a", "10.10.0.0/24", 4097)},
			want:     &api.Network{ID: "new", Spec: api.NetworkSpec{Name: "x", Subnet: "172.20.0.0/16"}, VNI: 4098, Gateway: "172.20.0.1"},
		},
		{
			name:     "given subnet overlaps",
			spec:     api.NetworkSpec{Name: "x", Subnet: "10.0.1.128/25"},
			existing: []*api.Network{net("a", "appnet", "10.0.1.0/24", 4097)},
			wantErr:  "subnet 10.0.1.128/25 overlaps network appnet (10.0.1.0/24)",
		},
		{
			name:     "given subnet contains another",
			spec:     api.NetworkSpec{Name: "x", Subnet: "10.0.0.0/8"},
			existing: []*api.Network{net("a", "appnet", "10.0.1.0/24", 4097)},
			wantErr:  "overlaps network appnet (10.0.1.0/24)",
		},
		{
			name:    "ingress range is kept while there is no ingress network",
			spec:    api.NetworkSpec{Name: "x", Subnet: "10.255.3.0/24"},
			wantErr: "overlaps network ingress (reserved) (10.255.0.0/16)",
		},
		{
			name:     "ingress range is free once a custom ingress exists",
			spec:     api.NetworkSpec{Name: "x", Subnet: "10.255.3.0/24"},
			existing: []*api.Network{{ID: "i", Spec: api.NetworkSpec{Name: "mesh", Subnet: "10.99.0.0/16", Ingress: true}, VNI: 4096}},
			want:     &api.Network{ID: "new", Spec: api.NetworkSpec{Name: "x", Subnet: "10.255.3.0/24"}, VNI: 4097, Gateway: "10.255.3.1"},
		},
		{
			name:     "default ingress",
			spec:     IngressSpec(),
			existing: []*api.Network{net("a", "a", "10.10.0.0/24", 4097)},
			want:     &api.Network{ID: "new", Spec: api.NetworkSpec{Name: "ingress", Subnet: "10.255.0.0/16", Ingress: true}, VNI: 4096, Gateway: "10.255.0.1"},
		},
		{
			name:     "ingress without a subnet overlapping a user network",
			spec:     api.NetworkSpec{Name: "ingress", Ingress: true},
			existing: []*api.Network{{ID: "m", Spec: api.NetworkSpec{Name: "old", Subnet: "10.255.0.0/24", Ingress: false}, VNI: 4097}},
			wantErr:  "overlaps network old",
		},
		{
			name:    "bad subnet",
			spec:    api.NetworkSpec{Name: "x", Subnet: "10.0.0.0/30"},
			wantErr: "subnet too small",
			wantIs:  ErrBadSubnet,
		},
		{
			name:     "pool exhausted",
			spec:     api.NetworkSpec{Name: "x"},
			existing: []*api.Network{net("a", "big", "10.10.0.0/16", 4097)},
			wantErr:  "default address pool exhausted",
			wantIs:   ErrPoolExhausted,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := NewNetwork("new", tt.spec, tt.existing)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("got %+v, %v, want error %q", got, err, tt.wantErr)
				}
				if tt.wantIs != nil && !errors.Is(err, tt.wantIs) {
					t.Errorf("got %v, want it to wrap %v", err, tt.wantIs)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if fmt.Sprintf("%+v", got) != fmt.Sprintf("%+v", tt.want) {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestPoolFillsUp(t *testing.T) {
	var existing []*api.Network
	for i := range 256 {
		n, err := NewNetwork(fmt.Sprintf("n%03d", i), api.NetworkSpec{Name: fmt.Sprintf("n%d", i)}, existing)
		if err != nil {
			t.Fatalf("network %d: %v", i, err)
		}
		if want := fmt.Sprintf("10.10.%d.0/24", i); n.Spec.Subnet != want {
			t.Fatalf("network %d: got %s, want %s", i, n.Spec.Subnet, want)
		}
		if want := FirstVNI + uint32(i); n.VNI != want {
			t.Fatalf("network %d: got VNI %d, want %d", i, n.VNI, want)
		}
		existing = append(existing, n)
	}
	if _, err := NewNetwork("full", api.NetworkSpec{Name: "full"}, existing); !errors.Is(err, ErrPoolExhausted) {
		t.Fatalf("got %v, want %v", err, ErrPoolExhausted)
	}
	// A given subnet outside the pool still works.
	if _, err := NewNetwork("x", api.NetworkSpec{Name: "x", Subnet: "10.20.0.0/24"}, existing); err != nil {
		t.Fatalf("got %v, want a network", err)
	}
}

func TestMACFromIP(t *testing.T) {
	if got, want := api.MACFromIP(netip.MustParseAddr("10.10.1.5")), "02:42:0a:0a:01:05"; got != want {
		t.Errorf("got %s, want %s", got, want)
	}
	if got := api.MACFromIP(netip.MustParseAddr("fd00::1")); got != "" {
		t.Errorf("got %q for IPv6, want empty", got)
	}
}
