package controlapi_test

import (
	"net/http"
	"testing"

	"github.com/shoal-dev/shoal/api"
	"github.com/shoal-dev/shoal/store"
)

// TestPlacementAndJobSpecs: preferences, the cap per node and job fields
// are checked at create, and a refusal names what is wrong and changes
// nothing; a job gets on-failure restarts unless said.
func TestPlacementAndJobSpecs(t *testing.T) {
	spread := func(d string) []api.PlacementPreference { return []api.PlacementPreference{{Spread: d}} }
	tests := []struct {
		name string
		mod  func(*api.ServiceSpec)
		msg  string // "" accepts it
	}{
		{"spread over a label", func(s *api.ServiceSpec) { s.Task.Placement.Preferences = spread("node.labels.zone") }, ""},
		{"unknown spread descriptor", func(s *api.ServiceSpec) { s.Task.Placement.Preferences = spread("foo") },
			`placement preference: spread descriptor "foo": want node.labels.NAME, like node.labels.zone`},
		{"empty label name", func(s *api.ServiceSpec) { s.Task.Placement.Preferences = spread("node.labels.") }, `spread descriptor "node.labels."`},
		{"too many preferences", func(s *api.ServiceSpec) {
			for range 9 {
				s.Task.Placement.Preferences = append(s.Task.Placement.Preferences, spread("node.labels.zone")...)
			}
		}, "placement preferences: 9, at most 8"},
		{"preferences on a global service", func(s *api.ServiceSpec) {
			s.Mode, s.Replicas, s.Task.Placement.Preferences = api.ModeGlobal, 0, spread("node.labels.zone")
		}, "placement preferences: a global service runs one task on every node"},
		{"max replicas", func(s *api.ServiceSpec) { s.Task.Placement.MaxReplicas = 2 }, ""},
		{"max replicas on a global job", func(s *api.ServiceSpec) {
			s.Mode, s.Replicas, s.Task.Placement.MaxReplicas = api.ModeGlobalJob, 0, 1
		}, "max replicas per node: a global-job service runs one task per node already"},
		{"replicated job", func(s *api.ServiceSpec) { s.Mode, s.Replicas, s.MaxConcurrent = api.ModeReplicatedJob, 5, 2 }, ""},
		{"global job", func(s *api.ServiceSpec) { s.Mode, s.Replicas = api.ModeGlobalJob, 0 }, ""},
		{"max concurrent on a replicated service", func(s *api.ServiceSpec) { s.MaxConcurrent = 2 },
			"max concurrent: only a replicated-job takes it (mode is replicated)"},
		{"max concurrent on a global job", func(s *api.ServiceSpec) { s.Mode, s.Replicas, s.MaxConcurrent = api.ModeGlobalJob, 0, 2 },
			"max concurrent: only a replicated-job takes it (mode is global-job)"},
		{"replicas on a global job", func(s *api.ServiceSpec) { s.Mode, s.Replicas = api.ModeGlobalJob, 3 }, "replicas: a global service"},
		{"restart any on a job", func(s *api.ServiceSpec) {
			s.Mode, s.Task.Restart.Condition = api.ModeReplicatedJob, api.RestartAny
		}, "restart condition any: a job's tasks run to completion"},
		{"unknown mode", func(s *api.ServiceSpec) { s.Mode = "job" }, `mode "job": want replicated, global, replicated-job or global-job`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, m := leaderFixture(t)
			c := m.admin()
			spec := api.ServiceSpec{Name: "web", Replicas: 1, Task: api.TaskSpec{Image: "busybox"}}
			tt.mod(&spec)
			if tt.msg == "" {
				var v api.ServiceView
				want(t, c.do("POST", "/v1/services", spec), http.StatusOK).decode(t, &v)
				if v.Spec.Mode.IsJob() && v.Spec.Task.Restart.Condition != api.RestartOnFailure {
					t.Errorf("job restart condition %q, want on-failure", v.Spec.Task.Restart.Condition)
				}
				return
			}
			refused(t, f, tt.msg, func() answer { return c.do("POST", "/v1/services", spec) })
		})
	}
}

// TestJobUpdates: every update of a job (spec, scale, force) starts a new
// run; a job cannot be rolled back; a scale sets the total completions.
func TestJobUpdates(t *testing.T) {
	f, m := leaderFixture(t)
	c := m.admin()
	spec := api.ServiceSpec{Name: "batch", Mode: api.ModeReplicatedJob, Replicas: 5, MaxConcurrent: 2, Task: api.TaskSpec{Image: "busybox"}}
	var v api.ServiceView
	want(t, c.do("POST", "/v1/services", spec), http.StatusOK).decode(t, &v)
	if v.JobIteration != 0 || v.Desired != 5 {
		t.Fatalf("created: iteration %d desired %d, want 0 and 5", v.JobIteration, v.Desired)
	}
	v.Spec.Task.ForceUpdate++
	want(t, c.do("POST", "/v1/services/batch/update", api.ServiceUpdate{Spec: &v.Spec}), http.StatusOK).decode(t, &v)
	if v.JobIteration != 1 {
		t.Errorf("after update --force: iteration %d, want 1", v.JobIteration)
	}
	three := uint64(3)
	want(t, c.do("POST", "/v1/services/batch/update", api.ServiceUpdate{Replicas: &three}), http.StatusOK).decode(t, &v)
	if v.JobIteration != 2 || v.Spec.Replicas != 3 || v.Desired != 3 {
		t.Errorf("after scale: iteration %d replicas %d desired %d, want 2, 3, 3", v.JobIteration, v.Spec.Replicas, v.Desired)
	}
	refused(t, f, "service batch is a job: jobs have no rollback", func() answer {
		return c.do("POST", "/v1/services/batch/update", api.ServiceUpdate{Rollback: true})
	})
	// Counts: only the current run's tasks.
	f.update(func(tx *store.Tx) error {
		for i, st := range []api.TaskState{api.TaskComplete, api.TaskComplete, api.TaskRunning, api.TaskComplete} {
			iter := uint64(2)
			if i == 3 {
				iter = 1
			}
			desired := api.TaskComplete
			if st == api.TaskRunning {
				desired = api.TaskRunning
			}
			if err := tx.PutTask(&api.Task{ID: api.NewID(), ServiceID: v.ID, ServiceName: "batch", Slot: uint64(i + 1),
				JobIteration: iter, DesiredState: desired, Status: api.TaskStatus{State: st}}); err != nil {
				return err
			}
		}
		return nil
	})
	want(t, c.do("GET", "/v1/services/batch", nil), http.StatusOK).decode(t, &v)
	if v.Completed != 2 || v.Running != 1 || v.Desired != 3 {
		t.Errorf("counts: completed %d running %d desired %d, want 2, 1, 3", v.Completed, v.Running, v.Desired)
	}
}
