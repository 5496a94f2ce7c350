package controlapi_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/shoal-dev/shoal/api"
	"github.com/shoal-dev/shoal/store"
)

func (f *fixture) networks() []*api.Network {
	var out []*api.Network
	f.store.View(func(tx store.ReadTx) { out = tx.Networks() })
	return out
}

func (f *fixture) networkNamed(name string) *api.Network {
	for _, n := range f.networks() {
		if n.Spec.Name == name {
			return n
		}
	}
	return nil
}

func (f *fixture) serviceNamed(name string) *api.Service {
	var out *api.Service
	f.store.View(func(tx store.ReadTx) {
		for _, s := range tx.Services() {
			if s.Spec.Name == name {
				out = s
			}
		}
	})
	return out
}

// refused checks that a call answers 400 with a message holding msg and
// leaves the store as it was.
func refused(t *testing.T, f *fixture, msg string, call func() answer) {
	t.Helper()
	before := f.store.Index()
	a := call()
	if a.code != http.StatusBadRequest || !strings.Contains(a.message(), msg) {
		t.Errorf("got %d %q, want 400 holding %q", a.code, a.message(), msg)
	}
	if after := f.store.Index(); after != before {
		t.Errorf("store index moved from %d to %d on a refused call", before, after)
	}
}

func TestCreateNetwork(t *testing.T) {
	f, m := leaderFixture(t)
	c := m.admin()
	var got api.Network
	want(t, c.do("POST", "/v1/networks", api.NetworkSpec{Name: "appnet", Attachable: true}), http.StatusOK).decode(t, &got)
	if got.ID == "" || got.Spec.Subnet != "10.10.0.0/24" || got.VNI != 4097 || got.Gateway != "10.10.0.1" || !got.Spec.Attachable {
		t.Errorf("got %+v, want appnet on 10.10.0.0/24, VNI 4097, gateway 10.10.0.1, attachable", got)
	}
	want(t, c.do("POST", "/v1/networks", api.NetworkSpec{Name: "given", Subnet: "10.0.1.0/24"}), http.StatusOK).decode(t, &got)
	if got.Spec.Subnet != "10.0.1.0/24" || got.VNI != 4098 || got.Gateway != "10.0.1.1" {
		t.Errorf("got %+v, want 10.0.1.0/24, VNI 4098", got)
	}
	if n := len(f.networks()); n != 2 {
		t.Errorf("got %d networks, want 2", n)
	}
}

func TestCreateNetworkRefuses(t *testing.T) {
	f, m := leaderFixture(t)
	c := m.admin()
	want(t, c.do("POST", "/v1/networks", api.NetworkSpec{Name: "appnet", Subnet: "10.0.1.0/24"}), http.StatusOK)
	want(t, c.do("POST", "/v1/networks", api.NetworkSpec{Name: "mesh", Ingress: true}), http.StatusOK)
	tests := []struct {
		name string
		body any
		msg  string
	}{
		{"bad name", api.NetworkSpec{Name: "app net"}, `network name "app net": want 1-63 letters`},
		{"empty name", api.NetworkSpec{}, `network name "": want`},
		{"ingress name", api.NetworkSpec{Name: "ingress"}, `the name "ingress" is kept for the ingress network`},
		{"not a CIDR", api.NetworkSpec{Name: "x", Subnet: "10.0.2.0"}, `"10.0.2.0": want a CIDR like 10.0.1.0/24`},
		{"IPv6", api.NetworkSpec{Name: "x", Subnet: "fd00::/64"}, "only IPv4 subnets"},
		{"too small", api.NetworkSpec{Name: "x", Subnet: "10.0.2.0/30"}, "subnet too small: 10.0.2.0/30"},
		{"host bits", api.NetworkSpec{Name: "x", Subnet: "10.0.2.1/24"}, "host bits set: want 10.0.2.0/24"},
		{"overlap", api.NetworkSpec{Name: "x", Subnet: "10.0.0.0/16"}, "overlaps network appnet (10.0.1.0/24)"},
		{"overlap inside", api.NetworkSpec{Name: "x", Subnet: "10.0.1.64/26"}, "overlaps network appnet (10.0.1.0/24)"},
		{"duplicate name", api.NetworkSpec{Name: "appnet", Subnet: "10.0.9.0/24"}, `a network named "appnet" exists already`},
		{"second ingress", api.NetworkSpec{Name: "mesh2", Ingress: true, Subnet: "10.0.9.0/24"}, "an ingress network exists already: mesh"},
		{"unknown field", []byte(`{"name":"x","driver":"bridge"}`), "unknown field"},
		{"empty body", []byte(``), "empty body"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			refused(t, f, tt.msg, func() answer { return c.do("POST", "/v1/networks", tt.body) })
		})
	}
}

func TestGetListRemoveNetwork(t *testing.T) {
	f, m := leaderFixture(t)
	c := m.admin()
	var created api.Network
	want(t, c.do("POST", "/v1/networks", api.NetworkSpec{Name: "appnet"}), http.StatusOK).decode(t, &created)
	for _, ref := range []string{"appnet", created.ID, created.ID[:6]} {
		var got api.Network
		want(t, c.do("GET", "/v1/networks/"+ref, nil), http.StatusOK).decode(t, &got)
		if got.ID != created.ID {
			t.Errorf("GET %s: got %s, want %s", ref, got.ID, created.ID)
		}
	}
	var list []api.Network
	want(t, c.do("GET", "/v1/networks", nil), http.StatusOK).decode(t, &list)
	if len(list) != 1 || list[0].ID != created.ID {
		t.Errorf("got %+v, want appnet only", list)
	}
	want(t, c.do("GET", "/v1/networks/nope", nil), http.StatusNotFound)
	want(t, c.do("DELETE", "/v1/networks/appnet", nil), http.StatusNoContent)
	want(t, c.do("DELETE", "/v1/networks/appnet", nil), http.StatusNotFound)
	if n := len(f.networks()); n != 0 {
		t.Errorf("got %d networks after rm, want 0", n)
	}
	want(t, m.asNode("w1", api.RoleWorker).do("GET", "/v1/networks", nil), http.StatusForbidden)
}

func TestRemoveNetworkInUse(t *testing.T) {
	f, m := leaderFixture(t)
	c := m.admin()
	want(t, c.do("POST", "/v1/networks", api.NetworkSpec{Name: "appnet"}), http.StatusOK)
	want(t, c.do("POST", "/v1/networks", api.NetworkSpec{Name: "spare"}), http.StatusOK)
	want(t, c.do("POST", "/v1/services", api.ServiceSpec{Name: "api", Task: api.TaskSpec{Image: "busybox"},
		Networks: []string{"appnet"}}), http.StatusOK)
	refused(t, f, "network appnet is used by service api", func() answer { return c.do("DELETE", "/v1/networks/appnet", nil) })

	// A live task on a network keeps it, a finished one does not.
	spare := f.networkNamed("spare")
	f.update(func(tx *store.Tx) error {
		return tx.PutTask(&api.Task{ID: "t1", ServiceID: "gone", ServiceName: "old", DesiredState: api.TaskShutdown,
			Status:   api.TaskStatus{State: api.TaskRunning},
			Networks: []api.NetworkAttachment{{NetworkID: spare.ID, Addr: "10.10.1.2/24"}}})
	})
	refused(t, f, "network spare is used by task t1 of service old", func() answer { return c.do("DELETE", "/v1/networks/spare", nil) })
	f.update(func(tx *store.Tx) error {
		tk := tx.Task("t1")
		tk.Status.State = api.TaskShutdown
		return tx.PutTask(tk)
	})
	want(t, c.do("DELETE", "/v1/networks/spare", nil), http.StatusNoContent)

	// The ingress network stays while a service publishes ports.
	want(t, c.do("POST", "/v1/services", api.ServiceSpec{Name: "web", Task: api.TaskSpec{Image: "busybox"},
		Endpoint: api.EndpointSpec{Ports: []api.PortConfig{{Published: 8080, Target: 80}}}}), http.StatusOK)
	refused(t, f, "network ingress is used by service web: it publishes ports", func() answer {
		return c.do("DELETE", "/v1/networks/ingress", nil)
	})
	want(t, c.do("DELETE", "/v1/services/web", nil), http.StatusNoContent)
	want(t, c.do("DELETE", "/v1/networks/ingress", nil), http.StatusNoContent)
}

func TestServiceNetworks(t *testing.T) {
	f, m := leaderFixture(t)
	c := m.admin()
	want(t, c.do("POST", "/v1/networks", api.NetworkSpec{Name: "appnet"}), http.StatusOK)
	want(t, c.do("POST", "/v1/networks", api.NetworkSpec{Name: "backnet"}), http.StatusOK)
	appnet, backnet := f.networkNamed("appnet"), f.networkNamed("backnet")

	var v api.ServiceView
	want(t, c.do("POST", "/v1/services", api.ServiceSpec{Name: "api", Task: api.TaskSpec{Image: "busybox"},
		Networks: []string{"appnet", backnet.ID, "appnet"}}), http.StatusOK).decode(t, &v)
	if got := v.Spec.Networks; len(got) != 2 || got[0] != appnet.ID || got[1] != backnet.ID {
		t.Errorf("got networks %v, want the IDs of appnet and backnet, once each", got)
	}
	if v.Spec.Endpoint.Mode != api.EndpointVIP {
		t.Errorf("got endpoint mode %q, want vip by default", v.Spec.Endpoint.Mode)
	}
	if f.networkNamed("ingress") != nil {
		t.Error("ingress network made for a service that publishes nothing")
	}

	// The first published port makes the ingress network.
	want(t, c.do("POST", "/v1/services", api.ServiceSpec{Name: "web", Task: api.TaskSpec{Image: "busybox"},
		Endpoint: api.EndpointSpec{Ports: []api.PortConfig{{Published: 8080, Target: 80}, {Published: 8080, Target: 80, Protocol: "udp"}}}}),
		http.StatusOK).decode(t, &v)
	if p := v.Spec.Endpoint.Ports[0]; p.Protocol != api.ProtocolTCP {
		t.Errorf("got protocol %q, want tcp by default", p.Protocol)
	}
	ing := f.networkNamed("ingress")
	if ing == nil || !ing.Spec.Ingress || ing.Spec.Subnet != "10.255.0.0/16" || ing.VNI != 4096 || ing.Gateway != "10.255.0.1" {
		t.Fatalf("got ingress %+v, want 10.255.0.0/16 with VNI 4096", ing)
	}

	base := api.ServiceSpec{Name: "other", Task: api.TaskSpec{Image: "busybox"}}
	with := func(fn func(s *api.ServiceSpec)) api.ServiceSpec {
		s := base
		fn(&s)
		return s
	}
	tests := []struct {
		name string
		spec api.ServiceSpec
		msg  string
	}{
		{"unknown network", with(func(s *api.ServiceSpec) { s.Networks = []string{"appnet", "nope"} }), `network "nope" not found`},
		{"empty network", with(func(s *api.ServiceSpec) { s.Networks = []string{""} }), "empty network name"},
		{"ingress by name", with(func(s *api.ServiceSpec) { s.Networks = []string{"ingress"} }), "network ingress is the ingress network"},
		{"port taken", with(func(s *api.ServiceSpec) { s.Endpoint.Ports = []api.PortConfig{{Published: 8080, Target: 8080}} }),
			"port 8080/tcp is already published by service web"},
		{"udp port taken", with(func(s *api.ServiceSpec) {
			s.Endpoint.Ports = []api.PortConfig{{Published: 8080, Target: 53, Protocol: "udp"}}
		}), "port 8080/udp is already published by service web"},
		{"port twice", with(func(s *api.ServiceSpec) {
			s.Endpoint.Ports = []api.PortConfig{{Published: 9000, Target: 80}, {Published: 9000, Target: 81, Protocol: "tcp"}}
		}), "port 9000/tcp is published twice"},
		{"no target", with(func(s *api.ServiceSpec) { s.Endpoint.Ports = []api.PortConfig{{Published: 9000}} }),
			"port 9000:0/tcp: want published and target ports"},
		{"no published port", with(func(s *api.ServiceSpec) { s.Endpoint.Ports = []api.PortConfig{{Target: 80}} }),
			"want published and target ports"},
		{"bad protocol", with(func(s *api.ServiceSpec) {
			s.Endpoint.Ports = []api.PortConfig{{Published: 9000, Target: 80, Protocol: "sctp"}}
		}),
			`protocol "sctp": want tcp or udp`},
		{"bad mode", with(func(s *api.ServiceSpec) { s.Endpoint.Mode = "round-robin" }), `endpoint mode "round-robin": want vip or dnsrr`},
		{"dnsrr with ports", with(func(s *api.ServiceSpec) {
			s.Endpoint = api.EndpointSpec{Mode: api.EndpointDNSRR, Ports: []api.PortConfig{{Published: 9000, Target: 80}}}
		}), "endpoint mode dnsrr cannot publish ports"},
	}
	for _, tt := range tests {
		t.Run("create "+tt.name, func(t *testing.T) {
			refused(t, f, tt.msg, func() answer { return c.do("POST", "/v1/services", tt.spec) })
			if f.serviceNamed("other") != nil {
				t.Error("service created by a refused call")
			}
		})
		t.Run("update "+tt.name, func(t *testing.T) {
			spec := tt.spec
			spec.Name = "api"
			refused(t, f, tt.msg, func() answer {
				return c.do("POST", "/v1/services/api/update", api.ServiceUpdate{Spec: &spec})
			})
		})
	}

	// An update may keep its own ports and change its networks.
	web := f.serviceNamed("web").Spec
	web.Networks = []string{"backnet"}
	want(t, c.do("POST", "/v1/services/web/update", api.ServiceUpdate{Spec: &web}), http.StatusOK).decode(t, &v)
	if got := v.Spec.Networks; len(got) != 1 || got[0] != backnet.ID {
		t.Errorf("got networks %v, want backnet's ID", got)
	}
	if got := f.serviceNamed("web").PreviousSpec; got == nil || len(got.Networks) != 0 {
		t.Errorf("got previous spec %+v, want the one without networks", got)
	}
}
