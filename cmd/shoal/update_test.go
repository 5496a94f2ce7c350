package main

import (
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"

	"github.com/shoal-dev/shoal/api"
)

func TestServiceUpdateFlags(t *testing.T) {
	base := func() api.ServiceSpec {
		return api.ServiceSpec{
			Name: "web", Mode: api.ModeReplicated, Replicas: 2, Labels: map[string]string{"a": "1"},
			Networks: []string{"netid1"},
			Task: api.TaskSpec{Image: "app:1", Command: []string{"httpd", "-f"}, Env: []string{"A=1", "B=2"},
				Placement: api.Placement{Constraints: []string{"node.role==worker"}}},
			Endpoint: api.EndpointSpec{Ports: []api.PortConfig{{Published: 8080, Target: 80, Protocol: api.ProtocolTCP}}},
		}
	}
	resolve := func(ref string) (string, error) {
		switch ref {
		case "front", "netid1":
			return "netid1", nil
		case "back":
			return "netid2", nil
		}
		return "", errors.New("no such network: " + ref)
	}
	cfg := func(mod func(*api.UpdateConfig)) *api.UpdateConfig {
		c := api.DefaultUpdateConfig()
		mod(&c)
		return &c
	}
	tests := []struct {
		args    []string
		mod     func(*api.ServiceSpec) // what the spec should become
		wantErr string
	}{
		{args: []string{"--image", "app:2"}, mod: func(s *api.ServiceSpec) { s.Task.Image = "app:2" }},
		{args: []string{"--env-add", "B=3", "--env-add", "C=4", "--env-rm", "A"},
			mod: func(s *api.ServiceSpec) { s.Task.Env = []string{"B=3", "C=4"} }},
		{args: []string{"--label-add", "b=2", "--label-rm", "a"}, mod: func(s *api.ServiceSpec) { s.Labels = map[string]string{"b": "2"} }},
		{args: []string{"--constraint-rm", "node.role==worker", "--constraint-add", "node.labels.zone==a"},
			mod: func(s *api.ServiceSpec) { s.Task.Placement.Constraints = []string{"node.labels.zone==a"} }},
		{args: []string{"--reserve-cpu", "0.5", "--limit-memory", "64MiB"}, mod: func(s *api.ServiceSpec) {
			s.Task.Resources.Reservations.NanoCPUs = 5e8
			s.Task.Resources.Limits.MemoryBytes = 64 << 20
		}},
		{args: []string{"--restart-condition", "on-failure", "--restart-delay", "5s", "--restart-max-attempts", "3"},
			mod: func(s *api.ServiceSpec) {
				d := 5 * time.Second
				s.Task.Restart = api.RestartPolicy{Condition: api.RestartOnFailure, Delay: &d, MaxAttempts: 3}
			}},
		{args: []string{"--restart-window", "2m"}, mod: func(s *api.ServiceSpec) { s.Task.Restart.Window = 2 * time.Minute }},
		{args: []string{"--replicas", "5", "--stop-grace-period", "3s"}, mod: func(s *api.ServiceSpec) { s.Replicas = 5; s.Task.StopGracePeriod = 3 * time.Second }},
		{args: []string{"--command", `sh -c 'echo "hi there"'`}, mod: func(s *api.ServiceSpec) { s.Task.Command = []string{"sh", "-c", `echo "hi there"`} }},
		{args: []string{"--args", "-p 8080"}, mod: func(s *api.ServiceSpec) { s.Task.Command = []string{"-p", "8080"} }},
		{args: []string{"--network-add", "back", "--network-rm", "front"}, mod: func(s *api.ServiceSpec) { s.Networks = []string{"netid2"} }},
		{args: []string{"--publish-rm", "8080", "--publish-add", "9090:90"},
			mod: func(s *api.ServiceSpec) {
				s.Endpoint.Ports = []api.PortConfig{{Published: 9090, Target: 90, Protocol: api.ProtocolTCP}}
			}},
		{args: []string{"--force"}, mod: func(s *api.ServiceSpec) { s.Task.ForceUpdate = 1 }},
		{args: []string{"--update-parallelism", "2", "--update-delay", "10s", "--update-order", "start-first",
			"--update-failure-action", "rollback", "--update-monitor", "3s", "--update-max-failure-ratio", "0.25"},
			mod: func(s *api.ServiceSpec) {
				s.Update = &api.UpdateConfig{Parallelism: 2, Delay: 10 * time.Second, Order: api.OrderStartFirst,
					FailureAction: api.ActionRollback, Monitor: 3 * time.Second, MaxFailureRatio: 0.25}
			}},
		{args: []string{"--rollback-parallelism", "0"}, mod: func(s *api.ServiceSpec) { s.Rollback = cfg(func(c *api.UpdateConfig) { c.Parallelism = 0 }) }},

		{args: []string{"--health-cmd", "true", "--health-interval", "2s"}, mod: func(s *api.ServiceSpec) {
			s.Task.Healthcheck = &api.HealthConfig{Test: []string{"CMD-SHELL", "true"}, Interval: 2 * time.Second}
		}},
		{args: []string{"--no-healthcheck"}, mod: func(s *api.ServiceSpec) { s.Task.Healthcheck = &api.HealthConfig{Test: []string{"NONE"}} }},
		{args: []string{"--health-retries", "0"}, mod: func(s *api.ServiceSpec) {}},
		{args: []string{"--image", ""}, wantErr: "--image: want a name"},
		{args: []string{"--health-start-period", "soon"}, wantErr: `--health-start-period "soon": want a duration`},
		{args: []string{"--no-healthcheck", "--health-retries", "2"}, wantErr: "conflicts"},
		{args: []string{"--env-add", "NOVALUE"}, wantErr: `--env-add "NOVALUE": want KEY=VALUE`},
		{args: []string{"--constraint-rm", "node.id==x"}, wantErr: `--constraint-rm "node.id==x": the service has no such constraint`},
		{args: []string{"--network-rm", "back"}, wantErr: `--network-rm "back": the service is not on that network`},
		{args: []string{"--network-add", "nope"}, wantErr: "no such network: nope"},
		{args: []string{"--publish-add", "8080:81"}, wantErr: "port 8080/tcp is published already"},
		{args: []string{"--publish-rm", "9999"}, wantErr: `--publish-rm "9999": the service does not publish that port`},
		{args: []string{"--command", `sh -c 'oops`}, wantErr: "unterminated quote"},
		{args: []string{"--update-order", "sideways"}, wantErr: `--update-order "sideways": want stop-first or start-first`},
		{args: []string{"--update-failure-action", "explode"}, wantErr: "want pause, continue or rollback"},
		{args: []string{"--rollback-failure-action", "rollback"}, wantErr: `--rollback-failure-action "rollback": want pause or continue`},
		{args: []string{"--update-max-failure-ratio", "1.5"}, wantErr: "want a fraction from 0 to 1"},
		{args: []string{"--update-delay", "-1s"}, wantErr: "--update-delay"},
		{args: []string{"--update-parallelism", "two"}, wantErr: `--update-parallelism "two"`},
		{args: []string{"--reserve-cpu", "2", "--limit-cpu", "1"}, wantErr: "CPU reservation"},
		{args: []string{"--replicas", "x"}, wantErr: `--replicas "x"`},
		{args: []string{"--restart-condition", "sometimes"}, wantErr: "want any, on-failure or none"},
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
			err := f.apply(&spec, resolve)
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
			tt.mod(&want)
			if !reflect.DeepEqual(spec, want) {
				t.Errorf("got %+v\nwant %+v", spec, want)
			}
		})
	}
}
