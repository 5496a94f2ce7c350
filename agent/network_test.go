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
			ports, subnet, _, _ := ingressPorts(tt.st, api.OwnPorts())
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

// TestIngressSkipsOwnPorts: whatever the assignments say, the agent does not
// DNAT a port the node serves on itself.
func TestIngressSkipsOwnPorts(t *testing.T) {
	ing := &api.Network{ID: "ing", VNI: 4096, Spec: api.NetworkSpec{Name: "ingress", Subnet: "10.255.0.0/16", Ingress: true}}
	own := api.OwnPorts(api.Endpoints{API: "10.0.0.1:2377", Metrics: "10.0.0.1:9323"})
	tests := []struct {
		name        string
		published   []uint16
		wantPorts   []uint16
		wantRefused int
	}{
		{"a free port", []uint16{8080}, []uint16{8080}, 0},
		{"the API port", []uint16{2377, 8080}, []uint16{8080}, 1},
		{"raft, gossip, VXLAN", []uint16{2378, 7946, 4789}, nil, 3},
		{"the metrics port", []uint16{9323}, nil, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := api.NetworkState{Networks: []*api.Network{ing}, IngressAddr: "10.255.0.9/16"}
			for _, p := range tt.published {
				st.Published = append(st.Published, api.PublishedPort{PortConfig: api.PortConfig{Published: p, Target: 80}})
			}
			ports, _, _, refused := ingressPorts(st, own)
			var got []uint16
			for _, p := range ports {
				got = append(got, p.Published)
			}
			if !reflect.DeepEqual(got, tt.wantPorts) || len(refused) != tt.wantRefused {
				t.Errorf("got ports %v refused %v, want %v and %d refused", got, refused, tt.wantPorts, tt.wantRefused)
			}
		})
	}
}
