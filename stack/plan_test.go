package stack

import (
	"slices"
	"strings"
	"testing"

	"github.com/shoal-dev/shoal/api"
)

// deployed is what the API would have stored for spec: names resolved,
// defaults filled.
func deployed(t *testing.T, id string, spec api.ServiceSpec, nets map[string]string) api.ServiceView {
	t.Helper()
	r, err := Resolve(spec, IDs{Networks: nets}, nil)
	if err != nil {
		t.Fatal(err)
	}
	return api.ServiceView{Service: api.Service{ID: id, Meta: api.Meta{Version: 7}, Spec: r}}
}

func TestMakePlan(t *testing.T) {
	st, err := load(t, `services:
  web:
    image: web:1
    ports: ["8080:80"]
  api:
    image: api:1
    networks: [back]
networks:
  back:
`)
	if err != nil {
		t.Fatal(err)
	}
	web, apiSvc := st.Services[1], st.Services[0]
	nets := []api.Network{
		{ID: "n1", Spec: api.NetworkSpec{Name: "app_default", Labels: map[string]string{LabelNamespace: "app"}}},
		{ID: "n2", Spec: api.NetworkSpec{Name: "app_back", Labels: map[string]string{LabelNamespace: "app"}}},
	}
	ids := map[string]string{"app_default": "n1", "app_back": "n2"}
	names := func(specs []api.ServiceSpec) (out []string) {
		for _, s := range specs {
			out = append(out, s.Name)
		}
		return out
	}
	changedAPI := apiSvc.Clone()
	changedAPI.Task.Image = "api:0"
	forced := deployed(t, "s1", web, ids)
	forced.Spec.Task.ForceUpdate = 3
	old := api.ServiceSpec{Name: "app_old", Labels: map[string]string{LabelNamespace: "app"}, Task: api.TaskSpec{Image: "x"}}

	tests := []struct {
		name       string
		networks   []api.Network
		services   []api.ServiceView
		createNets []string
		create     []string
		update     []string
		unchanged  []string
		stale      []string
		wantErr    string
	}{
		{name: "first deploy", createNets: []string{"app_back", "app_default"}, create: []string{"app_api", "app_web"}},
		{
			name: "redeploy: unchanged (a forced update stays), changed, stale", networks: nets,
			services:  []api.ServiceView{forced, deployed(t, "s2", changedAPI, ids), deployed(t, "s3", old, ids)},
			update:    []string{"app_api"},
			unchanged: []string{"app_web"},
			stale:     []string{"app_old"},
		},
		{
			name: "a service of the same name outside the stack", networks: nets,
			services: []api.ServiceView{deployed(t, "s9", api.ServiceSpec{Name: "app_web", Task: api.TaskSpec{Image: "x"}}, ids)},
			wantErr:  "service app_web exists and is not part of stack app",
		},
		{
			name:     "a network of the same name outside the stack",
			networks: []api.Network{{ID: "n1", Spec: api.NetworkSpec{Name: "app_default"}}},
			wantErr:  "network app_default exists and is not part of stack app",
		},
		{
			name: "a port another service publishes", networks: nets,
			services: []api.ServiceView{{Service: api.Service{ID: "s8", Spec: api.ServiceSpec{Name: "other",
				Endpoint: api.EndpointSpec{Ports: []api.PortConfig{{Published: 8080, Target: 1, Protocol: "tcp"}}}}}}},
			wantErr: "port 8080/tcp is already published by service other",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := MakePlan(st, Cluster{Networks: tt.networks, Services: tt.services})
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error %v: want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var createNets, update, unchanged, stale []string
			for _, n := range p.CreateNetworks {
				createNets = append(createNets, n.Name)
			}
			for _, c := range p.Update {
				update = append(update, c.Spec.Name)
			}
			for _, s := range p.Unchanged {
				unchanged = append(unchanged, s.Spec.Name)
			}
			for _, s := range p.Stale {
				stale = append(stale, s.Spec.Name)
			}
			for what, pair := range map[string][2][]string{
				"networks to create": {createNets, tt.createNets}, "create": {names(p.Create), tt.create},
				"update": {update, tt.update}, "unchanged": {unchanged, tt.unchanged}, "stale": {stale, tt.stale},
			} {
				if !slices.Equal(pair[0], pair[1]) {
					t.Errorf("%s: %v, want %v", what, pair[0], pair[1])
				}
			}
		})
	}
}

func TestMakePlanExternalNetwork(t *testing.T) {
	st, err := load(t, "services:\n  web:\n    image: b\n    networks: [shared]\nnetworks:\n  shared: {external: true}\n")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := MakePlan(st, Cluster{}); err == nil || !strings.Contains(err.Error(), "network shared is external but does not exist") {
		t.Errorf("error %v: want the missing external network named", err)
	}
	p, err := MakePlan(st, Cluster{Networks: []api.Network{{ID: "n", Spec: api.NetworkSpec{Name: "shared"}}}})
	if err != nil || len(p.CreateNetworks) != 0 || len(p.Create) != 1 {
		t.Errorf("plan %+v, %v: want the service created on the existing network", p, err)
	}
}
