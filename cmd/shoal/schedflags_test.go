package main

import (
	"reflect"
	"strings"
	"testing"

	"github.com/spf13/pflag"

	"github.com/shoal-dev/shoal/api"
)

func TestSchedCreateFlags(t *testing.T) {
	zone := api.PlacementPreference{Spread: "node.labels.zone"}
	rack := api.PlacementPreference{Spread: "node.labels.rack"}
	tests := []struct {
		args    []string // before the image
		mod     func(*api.ServiceSpec)
		wantErr string
	}{
		{args: []string{"--placement-pref", "spread=node.labels.zone", "--placement-pref", "spread=node.labels.rack"},
			mod: func(s *api.ServiceSpec) { s.Task.Placement.Preferences = []api.PlacementPreference{zone, rack} }},
		{args: []string{"--replicas-max-per-node", "2"}, mod: func(s *api.ServiceSpec) { s.Task.Placement.MaxReplicas = 2 }},
		{args: []string{"--mode", "replicated-job", "--replicas", "5", "--max-concurrent", "2"},
			mod: func(s *api.ServiceSpec) { s.Mode, s.Replicas, s.MaxConcurrent = api.ModeReplicatedJob, 5, 2 }},
		{args: []string{"--mode", "replicated-job"}, mod: func(s *api.ServiceSpec) { s.Mode = api.ModeReplicatedJob }},
		{args: []string{"--mode", "global-job"}, mod: func(s *api.ServiceSpec) { s.Mode, s.Replicas = api.ModeGlobalJob, 0 }},
		{args: []string{"--placement-pref", "spread=foo"}, wantErr: `--placement-pref: placement preference "spread=foo": spread descriptor "foo": want node.labels.NAME`},
		{args: []string{"--placement-pref", "pack=node.labels.zone"}, wantErr: `placement preference "pack=node.labels.zone": want spread=node.labels.NAME`},
		{args: []string{"--replicas-max-per-node", "two"}, wantErr: `--replicas-max-per-node "two": want a number`},
		{args: []string{"--mode", "global", "--replicas-max-per-node", "1"}, wantErr: "--replicas-max-per-node: a global service runs one task per node"},
		{args: []string{"--mode", "global", "--placement-pref", "spread=node.labels.zone"}, wantErr: "--placement-pref: a global service"},
		{args: []string{"--max-concurrent", "2"}, wantErr: "--max-concurrent: only a replicated-job takes it (mode is replicated)"},
		{args: []string{"--mode", "global-job", "--max-concurrent", "2"}, wantErr: "(mode is global-job)"},
		{args: []string{"--mode", "replicated-job", "--max-concurrent", "-1"}, wantErr: `--max-concurrent "-1": want a number`},
		{args: []string{"--mode", "global-job", "--replicas", "2"}, wantErr: "--replicas: a global service"},
		{args: []string{"--mode", "replicated-job", "--restart-condition", "any"}, wantErr: "--restart-condition any: a job's tasks run to completion"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			var f createFlags
			fs := pflag.NewFlagSet("create", pflag.ContinueOnError)
			f.register(fs, true)
			if err := fs.Parse(append([]string{"--name", "web"}, tt.args...)); err != nil {
				t.Fatalf("parse: %v", err)
			}
			spec, err := f.spec([]string{"nginx"})
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("got error %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("spec: %v", err)
			}
			want := api.ServiceSpec{Name: "web", Mode: api.ModeReplicated, Replicas: 1, Task: api.TaskSpec{Image: "nginx"}}
			tt.mod(&want)
			if !reflect.DeepEqual(spec, want) {
				t.Errorf("got %+v\nwant %+v", spec, want)
			}
		})
	}
}

func TestSchedUpdateFlags(t *testing.T) {
	zone := api.PlacementPreference{Spread: "node.labels.zone"}
	rack := api.PlacementPreference{Spread: "node.labels.rack"}
	base := func() api.ServiceSpec {
		return api.ServiceSpec{Name: "web", Mode: api.ModeReplicated, Replicas: 2, Task: api.TaskSpec{Image: "app:1",
			Placement: api.Placement{Preferences: []api.PlacementPreference{zone}, MaxReplicas: 3}}}
	}
	tests := []struct {
		args    []string
		job     bool // the service is a replicated-job
		mod     func(*api.ServiceSpec)
		wantErr string
	}{
		{args: []string{"--placement-pref-add", "spread=node.labels.rack"},
			mod: func(s *api.ServiceSpec) { s.Task.Placement.Preferences = []api.PlacementPreference{zone, rack} }},
		{args: []string{"--placement-pref-rm", "spread=node.labels.zone", "--placement-pref-add", "spread=node.labels.rack"},
			mod: func(s *api.ServiceSpec) { s.Task.Placement.Preferences = []api.PlacementPreference{rack} }},
		{args: []string{"--placement-pref-rm", "spread=node.labels.zone"}, mod: func(s *api.ServiceSpec) { s.Task.Placement.Preferences = nil }},
		{args: []string{"--replicas-max-per-node", "0"}, mod: func(s *api.ServiceSpec) { s.Task.Placement.MaxReplicas = 0 }},
		{args: []string{"--max-concurrent", "4", "--replicas", "8"}, job: true, mod: func(s *api.ServiceSpec) { s.MaxConcurrent, s.Replicas = 4, 8 }},
		{args: []string{"--placement-pref-rm", "spread=node.labels.rack"}, wantErr: `--placement-pref-rm "spread=node.labels.rack": the service has no such preference`},
		{args: []string{"--placement-pref-add", "spread=node.hostname"}, wantErr: `spread descriptor "node.hostname": want node.labels.NAME`},
		{args: []string{"--max-concurrent", "4"}, wantErr: "--max-concurrent: only a replicated-job takes it"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			var f updateFlags
			fs := pflag.NewFlagSet("update", pflag.ContinueOnError)
			f.register(fs, true)
			if err := fs.Parse(tt.args); err != nil {
				t.Fatalf("parse: %v", err)
			}
			spec := base()
			if tt.job {
				spec.Mode = api.ModeReplicatedJob
			}
			err := f.apply(&spec, func(string) (string, error) { return "", nil })
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("got error %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("apply: %v", err)
			}
			want := base()
			if tt.job {
				want.Mode = api.ModeReplicatedJob
			}
			tt.mod(&want)
			if !reflect.DeepEqual(spec, want) {
				t.Errorf("got %+v\nwant %+v", spec, want)
			}
		})
	}
}

func TestReplicasText(t *testing.T) {
	job := func(mode api.ServiceMode, maxRun, running, completed, desired uint64) api.ServiceView {
		v := api.ServiceView{Desired: desired, Running: running, Completed: completed}
		v.Spec.Mode, v.Spec.MaxConcurrent = mode, maxRun
		return v
	}
	tests := []struct {
		v    api.ServiceView
		want string
	}{
		{job(api.ModeReplicated, 0, 2, 0, 3), "2/3"},
		{job(api.ModeReplicatedJob, 2, 2, 1, 5), "2/2 (1/5 completed)"},
		{job(api.ModeReplicatedJob, 2, 0, 5, 5), "0/2 (5/5 completed)"},
		{job(api.ModeReplicatedJob, 0, 3, 0, 3), "3/3 (0/3 completed)"},
		{job(api.ModeGlobalJob, 0, 1, 2, 3), "1/3 (2/3 completed)"},
	}
	for _, tt := range tests {
		if got := replicasText(tt.v); got != tt.want {
			t.Errorf("%s: got %q, want %q", tt.v.Spec.Mode, got, tt.want)
		}
	}
}
