package controlapi_test

import (
	"net/http"
	"testing"

	"github.com/shoal-dev/shoal/api"
)

// The API refuses a bad container setting on create and update alike, with
// the same message the CLI gives, and writes nothing.
func TestServiceRuntimeValidation(t *testing.T) {
	tests := []struct {
		name   string
		change func(t *api.TaskSpec)
		msg    string
	}{
		{"relative mount target", func(t *api.TaskSpec) {
			t.Mounts = []api.Mount{{Type: api.MountTmpfs, Target: "tmp"}}
		}, `mount target "tmp": want an absolute path`},
		{"bad capability", func(t *api.TaskSpec) { t.CapDrop = []string{"CAP_FLY"} }, "not a Linux capability"},
		{"bad ulimit", func(t *api.TaskSpec) { t.Ulimits = []api.Ulimit{{Name: "nofile", Soft: 9, Hard: 1}} }, "soft limit 9 is above the hard limit 1"},
		{"bad sysctl", func(t *api.TaskSpec) { t.Sysctls = map[string]string{"kernel.panic": "1"} }, "not namespaced"},
		{"bad signal", func(t *api.TaskSpec) { t.StopSignal = "SIGNOPE" }, `stop signal "SIGNOPE"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, m := leaderFixture(t)
			s := api.ServiceSpec{Name: "web", Task: api.TaskSpec{Image: "busybox"}}
			tt.change(&s.Task)
			refused(t, f, tt.msg, func() answer { return m.admin().do("POST", "/v1/services", s) })
			want(t, m.admin().do("POST", "/v1/services", api.ServiceSpec{Name: "web", Task: api.TaskSpec{Image: "busybox"}}), http.StatusOK)
			refused(t, f, tt.msg, func() answer {
				return m.admin().do("POST", "/v1/services/web/update", api.ServiceUpdate{Spec: &s})
			})
		})
	}
	// Capabilities are stored under their CAP_ names.
	_, m := leaderFixture(t)
	var got api.ServiceView
	want(t, m.admin().do("POST", "/v1/services", api.ServiceSpec{Name: "web", Task: api.TaskSpec{Image: "busybox", CapAdd: []string{"net_admin"}}}), http.StatusOK).decode(t, &got)
	if len(got.Spec.Task.CapAdd) != 1 || got.Spec.Task.CapAdd[0] != "CAP_NET_ADMIN" {
		t.Errorf("cap add stored as %q, want CAP_NET_ADMIN", got.Spec.Task.CapAdd)
	}
}
