package controlapi_test

import (
	"net/http"
	"testing"

	"github.com/shoal-dev/shoal/api"
)

// TestPublishModes: host-mode ports and ports on one host address are
// checked (bad address, clashes within a service, clashes with another
// service's ingress port, Shoal's own ports) and host-only services do not
// make the ingress network.
func TestPublishModes(t *testing.T) {
	host := func(ip string, port uint16) api.PortConfig {
		return api.PortConfig{Published: port, Target: 8443, PublishMode: api.PublishHost, PublishedIP: ip}
	}
	spec := func(name string, ports ...api.PortConfig) api.ServiceSpec {
		return api.ServiceSpec{Name: name, Task: api.TaskSpec{Image: "busybox"}, Endpoint: api.EndpointSpec{Ports: ports}}
	}
	f, m := leaderFixture(t)
	c := m.admin()

	var v api.ServiceView
	want(t, c.do("POST", "/v1/services", spec("edge", host("", 443))), http.StatusOK).decode(t, &v)
	if got := v.Spec.Endpoint.Ports[0]; got.PublishMode != api.PublishHost || got.Protocol != api.ProtocolTCP {
		t.Errorf("got %+v, want host mode, tcp", got)
	}
	if f.networkNamed("ingress") != nil {
		t.Error("a service with host-mode ports only made the ingress network")
	}
	// Another service may take the same host port: the scheduler keeps their tasks apart.
	want(t, c.do("POST", "/v1/services", spec("edge2", host("", 443))), http.StatusOK)
	// Ingress ports on distinct addresses do not clash; 0.0.0.0 is every address.
	want(t, c.do("POST", "/v1/services", spec("a", api.PortConfig{Published: 8080, Target: 80, PublishedIP: "10.0.0.5"})), http.StatusOK).decode(t, &v)
	if got := v.Spec.Endpoint.Ports[0]; got.PublishMode != api.PublishIngress || got.PublishedIP != "10.0.0.5" {
		t.Errorf("got %+v, want ingress mode on 10.0.0.5", got)
	}
	want(t, c.do("POST", "/v1/services", spec("b", api.PortConfig{Published: 8080, Target: 80, PublishedIP: "10.0.0.6"})), http.StatusOK)
	var cv api.ServiceView
	want(t, c.do("POST", "/v1/services", spec("c", api.PortConfig{Published: 9090, Target: 80, PublishedIP: "0.0.0.0"})), http.StatusOK).decode(t, &cv)
	if got := cv.Spec.Endpoint.Ports[0]; got.PublishedIP != "" {
		t.Errorf("0.0.0.0 kept as %q, want every address (\"\")", got.PublishedIP)
	}
	if f.networkNamed("ingress") == nil {
		t.Error("no ingress network for ingress ports")
	}

	tests := []struct {
		name string
		spec api.ServiceSpec
		msg  string
	}{
		{"bad address", spec("x", host("10.0.0.300", 80)), `published IP "10.0.0.300": not an IP address`},
		{"IPv6", spec("x", host("fd00::1", 80)), "only IPv4 addresses"},
		{"multicast", spec("x", host("224.0.0.1", 80)), "want a unicast address"},
		{"bad mode", spec("x", api.PortConfig{Published: 80, Target: 80, PublishMode: "bridge"}), `publish mode "bridge": want ingress or host`},
		{"host ports clash in one service", spec("x", host("", 444), host("10.0.0.5", 444)), "port 10.0.0.5:444:8443/tcp (host) clashes with port 444:8443/tcp (host)"},
		{"host port twice", spec("x", host("10.0.0.5", 444), host("10.0.0.5", 444)), "port 10.0.0.5:444/tcp is published twice"},
		{"host port on another's ingress port", spec("x", host("", 8080)), "port 8080/tcp is already published by service a in ingress mode"},
		{"ingress port on another's host port", spec("x", api.PortConfig{Published: 443, Target: 80}), "port 443/tcp is already published by service edge"},
		{"ingress port on the same address", spec("x", api.PortConfig{Published: 8080, Target: 80, PublishedIP: "10.0.0.5"}), "port 10.0.0.5:8080/tcp is already published by service a"},
		{"own port in host mode", spec("x", host("10.0.0.5", 2377)), "port 2377 cannot be published: it is Shoal's own"},
		{"dnsrr with an ingress port", api.ServiceSpec{Name: "x", Task: api.TaskSpec{Image: "busybox"},
			Endpoint: api.EndpointSpec{Mode: api.EndpointDNSRR, Ports: []api.PortConfig{{Published: 7000, Target: 80}}}}, "endpoint mode dnsrr cannot publish ports in ingress mode"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			refused(t, f, tt.msg, func() answer { return c.do("POST", "/v1/services", tt.spec) })
			if f.serviceNamed("x") != nil {
				t.Error("service created by a refused call")
			}
		})
	}
	// dnsrr may publish in host mode: no virtual IP is needed.
	want(t, c.do("POST", "/v1/services", api.ServiceSpec{Name: "dns", Task: api.TaskSpec{Image: "busybox"},
		Endpoint: api.EndpointSpec{Mode: api.EndpointDNSRR, Ports: []api.PortConfig{host("", 5353)}}}), http.StatusOK)
}
