package agent

import (
	"net/netip"
	"reflect"
	"testing"

	"github.com/shoal-dev/shoal/api"
	"github.com/shoal-dev/shoal/overlay/lb"
)

func TestIngressState(t *testing.T) {
	ing := &api.Network{ID: "ing", VNI: 4096, Gateway: "10.255.0.1", Spec: api.NetworkSpec{Name: "ingress", Subnet: "10.255.0.0/16", Ingress: true}}
	pub := []api.PublishedPort{{PortConfig: api.PortConfig{Published: 8080, Target: 80}, Backends: []string{"10.255.0.2/16", "10.255.0.3/16"}}}
	tests := []struct {
		name       string
		st         api.NetworkState
		wantPorts  []lb.PublishedPort
		wantSubnet netip.Prefix
		wantHost   netip.Prefix
	}{
		{
			name:       "ports with backends on a node with an ingress address",
			st:         api.NetworkState{Networks: []*api.Network{ing}, IngressAddr: "10.255.0.9/16", Published: pub},
			wantPorts:  []lb.PublishedPort{{Published: 8080, Target: 80, Backends: []netip.Addr{netip.MustParseAddr("10.255.0.2"), netip.MustParseAddr("10.255.0.3")}}},
			wantSubnet: netip.MustParsePrefix("10.255.0.0/16"),
			wantHost:   netip.MustParsePrefix("10.255.0.9/16"),
		},
		{
			name: "no ingress address: no ports, no host address",
			st:   api.NetworkState{Networks: []*api.Network{ing}, Published: pub},
		},
		{
			name:     "an ingress address and nothing published",
			st:       api.NetworkState{Networks: []*api.Network{ing}, IngressAddr: "10.255.0.9/16"},
			wantHost: netip.MustParsePrefix("10.255.0.9/16"),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ports, subnet, _ := ingressPorts(tt.st)
			if !reflect.DeepEqual(ports, tt.wantPorts) || subnet != tt.wantSubnet {
				t.Errorf("ingressPorts: got %v %v, want %v %v", ports, subnet, tt.wantPorts, tt.wantSubnet)
			}
			d, err := (&Network{netnsPrefix: "shoal-n1-"}).desired(nil, tt.st)
			if err != nil {
				t.Fatalf("desired: %v", err)
			}
			if len(d.Networks) != 1 || d.Networks[0].HostAddr != tt.wantHost {
				t.Errorf("desired networks: got %+v, want host address %v", d.Networks, tt.wantHost)
			}
		})
	}
}
