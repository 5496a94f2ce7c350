package controlapi_test

import (
	"net/http"
	"testing"

	"github.com/shoal-dev/shoal/api"
	"github.com/shoal-dev/shoal/store"
)

// TestPublishOwnPorts: a port Shoal uses on any node cannot be published, by
// create or update, and the refusal names the port and what uses it.
func TestPublishOwnPorts(t *testing.T) {
	tests := []struct {
		name string
		port api.PortConfig
		msg  string // "" accepts it
	}{
		{"API", api.PortConfig{Published: 2377, Target: 80}, "port 2377 cannot be published: it is Shoal's own, the API port"},
		{"raft", api.PortConfig{Published: 2378, Target: 80}, "the raft port"},
		{"gossip over udp", api.PortConfig{Published: 7946, Target: 53, Protocol: "udp"}, "the gossip port"},
		{"VXLAN", api.PortConfig{Published: 4789, Target: 80, Protocol: "udp"}, "the VXLAN port"},
		{"a node's metrics port", api.PortConfig{Published: 9323, Target: 80}, "a metrics port (10.0.0.2:9323)"},
		{"a node's non-default API port", api.PortConfig{Published: 12377, Target: 80}, "an API port (10.0.0.2:12377)"},
		{"a free port", api.PortConfig{Published: 8080, Target: 80}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, m := leaderFixture(t)
			f.addNode("w1", "host-w1", api.RoleWorker, api.NodeStateReady)
			f.update(func(tx *store.Tx) error {
				n := tx.Node("w1")
				n.Endpoints = api.Endpoints{API: "10.0.0.2:12377", Raft: "10.0.0.2:2378", Gossip: "10.0.0.2:7946", Metrics: "10.0.0.2:9323"}
				return tx.PutNode(n)
			})
			c := m.admin()
			spec := api.ServiceSpec{Name: "web", Task: api.TaskSpec{Image: "busybox"},
				Endpoint: api.EndpointSpec{Ports: []api.PortConfig{tt.port}}}
			if tt.msg == "" {
				want(t, c.do("POST", "/v1/services", spec), http.StatusOK)
				return
			}
			refused(t, f, tt.msg, func() answer { return c.do("POST", "/v1/services", spec) })
			if f.networkNamed("ingress") != nil {
				t.Error("a refused publish made the ingress network")
			}
			want(t, c.do("POST", "/v1/services", api.ServiceSpec{Name: "web", Task: api.TaskSpec{Image: "busybox"}}), http.StatusOK)
			refused(t, f, tt.msg, func() answer {
				return c.do("POST", "/v1/services/web/update", api.ServiceUpdate{Spec: &spec})
			})
		})
	}
}
