package manager

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/shoal-dev/shoal/api"
	"github.com/shoal-dev/shoal/clock"
	"github.com/shoal-dev/shoal/store"
)

func TestStateCollector(t *testing.T) {
	s := store.New(clock.NewFake(time.Unix(0, 0)), slog.New(slog.DiscardHandler))
	err := s.Update(context.Background(), func(tx *store.Tx) error {
		for _, n := range []*api.Node{
			{ID: "m1", Spec: api.NodeSpec{Role: api.RoleManager}, Status: api.NodeStatus{State: api.NodeStateReady}},
			{ID: "w1", Spec: api.NodeSpec{Role: api.RoleWorker}, Status: api.NodeStatus{State: api.NodeStateDown}},
		} {
			if err := tx.PutNode(n); err != nil {
				return err
			}
		}
		if err := tx.PutService(&api.Service{ID: "s1", Spec: api.ServiceSpec{Name: "web", Mode: api.ModeReplicated, Replicas: 3}}); err != nil {
			return err
		}
		if err := tx.PutService(&api.Service{ID: "s2", Spec: api.ServiceSpec{Name: "agent", Mode: api.ModeGlobal}}); err != nil {
			return err
		}
		for _, task := range []*api.Task{
			{ID: "t1", ServiceID: "s1", Slot: 1, DesiredState: api.TaskRunning, Status: api.TaskStatus{State: api.TaskRunning}},
			{ID: "t2", ServiceID: "s1", Slot: 2, DesiredState: api.TaskRunning, Status: api.TaskStatus{State: api.TaskPending}},
			{ID: "t3", ServiceID: "s1", Slot: 1, DesiredState: api.TaskShutdown, Status: api.TaskStatus{State: api.TaskFailed}},
			{ID: "t4", ServiceID: "s2", NodeID: "m1", DesiredState: api.TaskRunning, Status: api.TaskStatus{State: api.TaskRunning}},
		} {
			if err := tx.PutTask(task); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	c := newStateCollector(s)
	for _, tc := range []struct {
		metric string
		labels []string
		want   float64
	}{
		{"shoal_service_replicas_desired", []string{"web"}, 3},
		{"shoal_service_replicas_running", []string{"web"}, 1},
		{"shoal_service_replicas_desired", []string{"agent"}, 1},
		{"shoal_service_replicas_running", []string{"agent"}, 1},
		{"shoal_nodes", []string{"manager", "ready"}, 1},
		{"shoal_nodes", []string{"worker", "down"}, 1},
		{"shoal_nodes", []string{"worker", "ready"}, 0},
		{"shoal_tasks", []string{"running"}, 2},
		{"shoal_tasks", []string{"failed"}, 1},
		{"shoal_tasks", []string{"complete"}, 0},
	} {
		got := gather(t, c, tc.metric, tc.labels)
		if got != tc.want {
			t.Errorf("%s%v = %v, want %v", tc.metric, tc.labels, got, tc.want)
		}
	}
}

// gather reads one gauge by its label values, in the order of the label names.
func gather(t *testing.T, c *stateCollector, name string, values []string) float64 {
	t.Helper()
	families, err := gatherFamilies(c)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
	metrics:
		for _, m := range f.GetMetric() {
			for i, l := range m.GetLabel() {
				if l.GetValue() != values[i] {
					continue metrics
				}
			}
			return m.GetGauge().GetValue()
		}
	}
	t.Fatalf("no %s%v", name, values)
	return 0
}

func gatherFamilies(c *stateCollector) ([]*dto.MetricFamily, error) {
	reg := prometheus.NewPedanticRegistry()
	if err := reg.Register(c); err != nil {
		return nil, err
	}
	return reg.Gather()
}
