package manager

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"reflect"
	"testing"
	"time"

	"github.com/shoal-dev/shoal/api"
	"github.com/shoal-dev/shoal/clock"
	"github.com/shoal-dev/shoal/store"
)

// sdStore is a store with two nodes that serve metrics, one that does
// not, and services with and without the prometheus labels.
func sdStore(t *testing.T) *store.Store {
	t.Helper()
	s := store.New(clock.NewFake(time.Unix(0, 0)), slog.New(slog.DiscardHandler))
	err := s.Update(context.Background(), func(tx *store.Tx) error {
		for _, n := range []*api.Node{
			{ID: "m1", Spec: api.NodeSpec{Role: api.RoleManager, Availability: api.AvailabilityActive,
				Labels: map[string]string{"zone": "a", "com.example/rack": "r1"}},
				Status:      api.NodeStatus{State: api.NodeStateReady},
				Description: api.NodeDescription{Hostname: "host-m1"},
				Endpoints:   api.Endpoints{Metrics: "10.0.0.1:9323"}},
			{ID: "w1", Spec: api.NodeSpec{Role: api.RoleWorker, Availability: api.AvailabilityDrain},
				Status:      api.NodeStatus{State: api.NodeStateDown},
				Description: api.NodeDescription{Hostname: "host-w1"},
				Endpoints:   api.Endpoints{Metrics: "10.0.0.2:9323"}},
			{ID: "w2", Spec: api.NodeSpec{Role: api.RoleWorker},
				Status:      api.NodeStatus{State: api.NodeStateReady},
				Description: api.NodeDescription{Hostname: "host-w2"}},
		} {
			if err := tx.PutNode(n); err != nil {
				return err
			}
		}
		for _, svc := range []*api.Service{
			{ID: "s1", Spec: api.ServiceSpec{Name: "web", Mode: api.ModeReplicated, Replicas: 2,
				Labels: map[string]string{LabelPrometheusPort: "8080", LabelPrometheusPath: "/stats"}}},
			{ID: "s2", Spec: api.ServiceSpec{Name: "node-exporter", Mode: api.ModeGlobal,
				Labels: map[string]string{LabelPrometheusPort: "9100"}}},
			{ID: "s3", Spec: api.ServiceSpec{Name: "plain", Mode: api.ModeReplicated, Replicas: 1}},
			{ID: "s4", Spec: api.ServiceSpec{Name: "badport", Mode: api.ModeReplicated, Replicas: 1,
				Labels: map[string]string{LabelPrometheusPort: "http"}}},
		} {
			if err := tx.PutService(svc); err != nil {
				return err
			}
		}
		for _, tk := range []*api.Task{
			{ID: "t2", ServiceID: "s1", ServiceName: "web", Slot: 2, NodeID: "w2", DesiredState: api.TaskRunning,
				Status: api.TaskStatus{State: api.TaskRunning}},
			{ID: "t1", ServiceID: "s1", ServiceName: "web", Slot: 1, NodeID: "m1", DesiredState: api.TaskRunning,
				Status: api.TaskStatus{State: api.TaskRunning}},
			// Not running: starting, or shutting down, or finished.
			{ID: "t3", ServiceID: "s1", ServiceName: "web", Slot: 1, NodeID: "m1", DesiredState: api.TaskRunning,
				Status: api.TaskStatus{State: api.TaskStarting}},
			{ID: "t4", ServiceID: "s1", ServiceName: "web", Slot: 2, NodeID: "w1", DesiredState: api.TaskShutdown,
				Status: api.TaskStatus{State: api.TaskRunning}},
			{ID: "t5", ServiceID: "s1", ServiceName: "web", Slot: 1, NodeID: "w1", DesiredState: api.TaskShutdown,
				Status: api.TaskStatus{State: api.TaskFailed}},
			{ID: "t6", ServiceID: "s2", ServiceName: "node-exporter", NodeID: "m1", DesiredState: api.TaskRunning,
				Status: api.TaskStatus{State: api.TaskRunning}},
			// On a node the store no longer has.
			{ID: "t7", ServiceID: "s2", ServiceName: "node-exporter", NodeID: "gone", DesiredState: api.TaskRunning,
				Status: api.TaskStatus{State: api.TaskRunning}},
			{ID: "t8", ServiceID: "s3", ServiceName: "plain", Slot: 1, NodeID: "m1", DesiredState: api.TaskRunning,
				Status: api.TaskStatus{State: api.TaskRunning}},
			{ID: "t9", ServiceID: "s4", ServiceName: "badport", Slot: 1, NodeID: "m1", DesiredState: api.TaskRunning,
				Status: api.TaskStatus{State: api.TaskRunning}},
		} {
			if err := tx.PutTask(tk); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("fill store: %v", err)
	}
	return s
}

var sdNodeGroups = []TargetGroup{
	{Targets: []string{"10.0.0.1:9323"}, Labels: map[string]string{
		"__meta_shoal_node_id":                     "m1",
		"__meta_shoal_node_hostname":               "host-m1",
		"__meta_shoal_node_role":                   "manager",
		"__meta_shoal_node_state":                  "ready",
		"__meta_shoal_node_availability":           "active",
		"__meta_shoal_node_label_zone":             "a",
		"__meta_shoal_node_label_com_example_rack": "r1",
	}},
	{Targets: []string{"10.0.0.2:9323"}, Labels: map[string]string{
		"__meta_shoal_node_id":           "w1",
		"__meta_shoal_node_hostname":     "host-w1",
		"__meta_shoal_node_role":         "worker",
		"__meta_shoal_node_state":        "down",
		"__meta_shoal_node_availability": "drain",
	}},
}

func TestPrometheusTargets(t *testing.T) {
	s := sdStore(t)
	addrs := map[string]string{"t1": "10.1.0.1", "t6": "10.1.0.6", "t7": "10.1.0.7", "t8": "10.1.0.8", "t9": "10.1.0.9"}
	m1Labels := map[string]string{
		"__meta_shoal_node_id":                     "m1",
		"__meta_shoal_node_hostname":               "host-m1",
		"__meta_shoal_node_label_zone":             "a",
		"__meta_shoal_node_label_com_example_rack": "r1",
	}
	with := func(base map[string]string, extra map[string]string) map[string]string {
		out := map[string]string{}
		for k, v := range base {
			out[k] = v
		}
		for k, v := range extra {
			out[k] = v
		}
		return out
	}
	want := append(append([]TargetGroup(nil), sdNodeGroups...),
		TargetGroup{Targets: []string{"10.1.0.6:9100"}, Labels: with(m1Labels, map[string]string{
			"__meta_shoal_service_name": "node-exporter",
			"__meta_shoal_service_id":   "s2",
			"__meta_shoal_task_id":      "t6",
			"__meta_shoal_task_slot":    "0",
		})},
		// t2 runs but has no address.
		TargetGroup{Targets: []string{"10.1.0.1:8080"}, Labels: with(m1Labels, map[string]string{
			"__meta_shoal_service_name": "web",
			"__meta_shoal_service_id":   "s1",
			"__meta_shoal_task_id":      "t1",
			"__meta_shoal_task_slot":    "1",
			"__metrics_path__":          "/stats",
		})},
	)
	var got []TargetGroup
	s.View(func(tx store.ReadTx) {
		got = PrometheusTargets(tx, func(t *api.Task) string { return addrs[t.ID] })
	})
	if !reflect.DeepEqual(got, want) {
		t.Errorf("targets:\ngot  %+v\nwant %+v", got, want)
	}
}

func TestSDHandler(t *testing.T) {
	tests := []struct {
		name  string
		store *store.Store
		want  []TargetGroup
	}{
		// Tasks have no address yet: only the nodes are targets.
		{"cluster", sdStore(t), sdNodeGroups},
		{"empty store", store.New(clock.NewFake(time.Unix(0, 0)), slog.New(slog.DiscardHandler)), []TargetGroup{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := httptest.NewServer(NewSDHandler(tt.store))
			defer srv.Close()
			resp, err := http.Get(srv.URL + "/sd/prometheus")
			if err != nil {
				t.Fatalf("GET: %v", err)
			}
			defer resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("status: got %d, want %d", resp.StatusCode, http.StatusOK)
			}
			if got, want := resp.Header.Get("Content-Type"), "application/json"; got != want {
				t.Errorf("Content-Type: got %q, want %q", got, want)
			}
			// Prometheus wants a list, never null.
			var raw json.RawMessage
			if err := json.NewDecoder(resp.Body).Decode(&raw); err != nil {
				t.Fatalf("decode: %v", err)
			}
			if len(raw) == 0 || raw[0] != '[' {
				t.Fatalf("body: got %s, want a JSON list", raw)
			}
			var got []TargetGroup
			if err := json.Unmarshal(raw, &got); err != nil {
				t.Fatalf("decode: %v", err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("targets:\ngot  %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

func TestLabelName(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"zone", "zone"},
		{"com.example/rack-id", "com_example_rack_id"},
		{"Ünïcode", "_n_code"},
		{"a_B9", "a_B9"},
	} {
		if got := labelName(tc.in); got != tc.want {
			t.Errorf("labelName(%q): got %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestTaskAddress(t *testing.T) {
	for _, tc := range []struct {
		name string
		task api.Task
		want string
	}{
		{"no network", api.Task{Status: api.TaskStatus{State: api.TaskRunning}}, ""},
		{"not running", api.Task{Status: api.TaskStatus{State: api.TaskStarting},
			Networks: []api.NetworkAttachment{{NetworkID: "n", Addr: "10.10.0.5/24"}}}, ""},
		{"first network", api.Task{Status: api.TaskStatus{State: api.TaskRunning},
			Networks: []api.NetworkAttachment{{NetworkID: "n", Addr: "10.10.0.5/24"}, {NetworkID: "m", Addr: "10.10.1.5/24"}}}, "10.10.0.5"},
	} {
		if got := taskAddress(&tc.task); got != tc.want {
			t.Errorf("%s: got %q, want %q", tc.name, got, tc.want)
		}
	}
}
