package controlapi_test

import (
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/shoal-dev/shoal/api"
)

func labels(n, keyLen, valueLen int) map[string]string {
	out := make(map[string]string, n)
	for i := range n {
		k := fmt.Sprintf("k%03d", i)
		if keyLen > len(k) {
			k += strings.Repeat("k", keyLen-len(k))
		}
		out[k] = strings.Repeat("v", valueLen)
	}
	return out
}

func repeat(n int, s string) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = s
	}
	return out
}

func TestServiceLimits(t *testing.T) {
	spec := func(change func(s *api.ServiceSpec)) api.ServiceSpec {
		s := api.ServiceSpec{Name: "web", Task: api.TaskSpec{Image: "busybox"}}
		change(&s)
		return s
	}
	tests := []struct {
		name   string
		change func(s *api.ServiceSpec)
		msg    string // "" accepts the spec
	}{
		{"64 labels", func(s *api.ServiceSpec) { s.Labels = labels(64, 128, 512) }, ""},
		{"fields each at their limit", func(s *api.ServiceSpec) {
			s.Task.Env = []string{"A=" + strings.Repeat("x", 16<<10-2)}
			s.Task.Command = []string{strings.Repeat("x", 16<<10)}
			s.Task.Image = strings.Repeat("i", 512)
		}, ""},
		{"65 labels", func(s *api.ServiceSpec) { s.Labels = labels(65, 4, 1) }, "labels: 65 labels, at most 64"},
		{"long label key", func(s *api.ServiceSpec) { s.Labels = labels(1, 129, 1) }, "is 129 bytes, at most 128"},
		{"long label value", func(s *api.ServiceSpec) { s.Labels = labels(1, 4, 1025) }, `labels: value of "k000" is 1025 bytes, at most 1024`},
		{"empty label key", func(s *api.ServiceSpec) { s.Labels = map[string]string{"": "x"} }, "labels: empty label key"},
		{"long image", func(s *api.ServiceSpec) { s.Task.Image = strings.Repeat("i", 513) }, "is 513 bytes, at most 512"},
		{"long workdir", func(s *api.ServiceSpec) { s.Task.Workdir = "/" + strings.Repeat("w", 1024) }, "workdir"},
		{"257 env", func(s *api.ServiceSpec) { s.Task.Env = repeat(257, "A=b") }, "env: 257 entries, at most 256"},
		{"long env", func(s *api.ServiceSpec) { s.Task.Env = []string{"A=b", "B=" + strings.Repeat("x", 16<<10)} }, "env[1]"},
		{"257 args", func(s *api.ServiceSpec) { s.Task.Command = repeat(257, "x") }, "command: 257 entries, at most 256"},
		{"long arg", func(s *api.ServiceSpec) { s.Task.Command = []string{strings.Repeat("x", 16<<10+1)} }, "command[0]"},
		{"health check", func(s *api.ServiceSpec) {
			s.Task.Healthcheck = &api.HealthConfig{Test: []string{"CMD-SHELL", "true"}, Interval: 1e9}
		}, ""},
		{"257 health args", func(s *api.ServiceSpec) {
			s.Task.Healthcheck = &api.HealthConfig{Test: append([]string{"CMD"}, repeat(256, "x")...)}
		}, "health test: 257 entries, at most 256"},
		{"bad health test", func(s *api.ServiceSpec) { s.Task.Healthcheck = &api.HealthConfig{Test: []string{"true"}} }, `health test "true": want CMD, CMD-SHELL or NONE`},
		{"negative health retries", func(s *api.ServiceSpec) { s.Task.Healthcheck = &api.HealthConfig{Retries: -1} }, "must not be negative"},
		{"33 constraints", func(s *api.ServiceSpec) { s.Task.Placement.Constraints = repeat(33, "node.role==worker") }, "constraints: 33 entries, at most 32"},
		{"129 ports", func(s *api.ServiceSpec) {
			for i := range 129 {
				s.Endpoint.Ports = append(s.Endpoint.Ports, api.PortConfig{Published: uint16(10000 + i), Target: 80})
			}
		}, "ports: 129 published ports, at most 128"},
		{"whole spec", func(s *api.ServiceSpec) { s.Task.Env = repeat(5, "A="+strings.Repeat("x", 15<<10)) }, "spec: "},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, m := leaderFixture(t)
			s := spec(tt.change)
			if tt.msg == "" {
				want(t, m.admin().do("POST", "/v1/services", s), http.StatusOK)
				return
			}
			refused(t, f, tt.msg, func() answer { return m.admin().do("POST", "/v1/services", s) })
			// An update carries the same limits.
			want(t, m.admin().do("POST", "/v1/services", spec(func(*api.ServiceSpec) {})), http.StatusOK)
			refused(t, f, tt.msg, func() answer {
				return m.admin().do("POST", "/v1/services/web/update", api.ServiceUpdate{Spec: &s})
			})
		})
	}
}

func TestNodeLabelLimits(t *testing.T) {
	tests := []struct {
		name string
		add  map[string]string
		msg  string
	}{
		{"one label too many", labels(64, 4, 1), "node labels: 65 labels, at most 64"},
		{"long value", map[string]string{"big": strings.Repeat("v", 1025)}, `node labels: value of "big" is 1025 bytes, at most 1024`},
		{"long key", labels(1, 200, 1), "is 200 bytes, at most 128"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, m := leaderFixture(t)
			f.addNode("w1", "host-w1", api.RoleWorker, api.NodeStateReady)
			want(t, m.admin().do("POST", "/v1/nodes/w1/update", api.NodeUpdate{LabelAdd: map[string]string{"zone": "a"}}), http.StatusOK)
			refused(t, f, tt.msg, func() answer {
				return m.admin().do("POST", "/v1/nodes/w1/update", api.NodeUpdate{LabelAdd: tt.add})
			})
		})
	}
	// Labels up to the limit, added one call at a time, are fine; the next is not.
	f, m := leaderFixture(t)
	f.addNode("w1", "host-w1", api.RoleWorker, api.NodeStateReady)
	for k, v := range labels(64, 128, 1024) {
		want(t, m.admin().do("POST", "/v1/nodes/w1/update", api.NodeUpdate{LabelAdd: map[string]string{k: v}}), http.StatusOK)
	}
	refused(t, f, "at most 64", func() answer {
		return m.admin().do("POST", "/v1/nodes/w1/update", api.NodeUpdate{LabelAdd: map[string]string{"one": "more"}})
	})
}

func TestNetworkLabelLimits(t *testing.T) {
	f, m := leaderFixture(t)
	refused(t, f, "labels: 65 labels, at most 64", func() answer {
		return m.admin().do("POST", "/v1/networks", api.NetworkSpec{Name: "appnet", Labels: labels(65, 4, 1)})
	})
}
