package orchestrator

import (
	"slices"
	"testing"

	"github.com/shoal-dev/shoal/api"
)

// New tasks carry their service's host-mode ports (the scheduler reads them
// from the task); a change of those ports replaces the tasks, a change of
// ingress ports alone does not.
func TestReconcileHostPorts(t *testing.T) {
	host443 := api.PortConfig{Published: 443, Target: 8443, Protocol: "tcp", PublishMode: api.PublishHost}
	ingress := api.PortConfig{Published: 8080, Target: 80, Protocol: "tcp", PublishMode: api.PublishIngress}
	withPorts := func(ports ...api.PortConfig) func(*api.Service) {
		return func(s *api.Service) { s.Spec.Endpoint.Ports = ports }
	}

	p := Reconcile(t0, service(api.ModeReplicated, 1, withPorts(host443, ingress)), nil, readyNodes())
	if len(p.Create) != 1 || !slices.Equal(p.Create[0].HostPorts, []api.PortConfig{host443}) {
		t.Fatalf("created %+v, want one task with host ports [%v]", p.Create, host443)
	}

	tests := []struct {
		name    string
		have    []api.PortConfig
		ports   []api.PortConfig
		replace bool
	}{
		{"same host port", []api.PortConfig{host443}, []api.PortConfig{host443}, false},
		{"ingress port moved", []api.PortConfig{host443}, []api.PortConfig{host443, {Published: 9090, Target: 80, Protocol: "tcp"}}, false},
		{"host port moved", []api.PortConfig{host443}, []api.PortConfig{{Published: 444, Target: 8443, Protocol: "tcp", PublishMode: api.PublishHost}}, true},
		{"host port dropped", []api.PortConfig{host443}, nil, true},
		{"host port added", nil, []api.PortConfig{host443}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			svc := service(api.ModeReplicated, 1, withPorts(tt.ports...), allAtOnce)
			svc.Meta.Version++ // the service changed since the task was made
			task := running("t1", 1, "n1", func(t *api.Task) {
				t.HostPorts = tt.have
				if len(svc.Spec.Endpoint.IngressPorts()) > 0 { // attached to ingress already
					t.Networks = []api.NetworkAttachment{{NetworkID: "ingress", Addr: "10.255.0.5/16"}}
				}
			})
			p := Reconcile(t0, svc, []*api.Task{task}, readyNodes())
			if got := len(p.Create) == 1; got != tt.replace {
				t.Errorf("replaced: %v, want %v (plan %+v)", got, tt.replace, summarize(p))
			}
		})
	}
}
