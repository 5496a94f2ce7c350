package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/shoal-dev/shoal/api"
)

func TestProgressOf(t *testing.T) {
	spec := api.ServiceSpec{Name: "app_web", Mode: api.ModeReplicated, Replicas: 2, Task: api.TaskSpec{Image: "web:2"}}
	oldSpec := api.TaskSpec{Image: "web:1"}
	task := func(id string, slot uint64, ts api.TaskSpec, state api.TaskState, err string) *api.Task {
		return &api.Task{ID: id, ServiceName: "app_web", Slot: slot, Spec: ts, DesiredState: api.TaskRunning,
			Status: api.TaskStatus{State: state, Err: err}}
	}
	view := func(running, desired uint64, st *api.UpdateStatus) api.ServiceView {
		return api.ServiceView{Service: api.Service{Spec: spec, UpdateStatus: st}, Running: running, Desired: desired}
	}
	tests := []struct {
		name       string
		target     deployTarget
		view       api.ServiceView
		tasks      []*api.Task
		done       bool
		failedWith string // "" when not failed
	}{
		{
			name: "created, all running", target: deployTarget{before: map[string]bool{}},
			view:  view(2, 2, nil),
			tasks: []*api.Task{task("a", 1, spec.Task, api.TaskRunning, ""), task("b", 2, spec.Task, api.TaskRunning, "")},
			done:  true,
		},
		{
			name: "created, one starting", target: deployTarget{before: map[string]bool{}},
			view:  view(1, 2, nil),
			tasks: []*api.Task{task("a", 1, spec.Task, api.TaskRunning, ""), task("b", 2, spec.Task, api.TaskStarting, "")},
		},
		{
			name: "a rejected task fails it at once, with the task's error", target: deployTarget{before: map[string]bool{}},
			view:       view(1, 2, nil),
			tasks:      []*api.Task{task("a", 1, spec.Task, api.TaskRunning, ""), task("b", 2, spec.Task, api.TaskRejected, "pull web:2: not found")},
			failedWith: "app_web.2: pull web:2: not found",
		},
		{
			name: "two exits are not yet a failure", target: deployTarget{before: map[string]bool{}},
			view: view(0, 1, nil),
			tasks: []*api.Task{task("a", 1, spec.Task, api.TaskFailed, "exit 1"), task("b", 1, spec.Task, api.TaskFailed, "exit 1"),
				task("c", 1, spec.Task, api.TaskStarting, "")},
		},
		{
			name: "the third exit is", target: deployTarget{before: map[string]bool{}},
			view: view(0, 1, nil),
			tasks: []*api.Task{task("a", 1, spec.Task, api.TaskFailed, "exit 1"), task("b", 1, spec.Task, api.TaskFailed, "exit 1"),
				task("c", 1, spec.Task, api.TaskFailed, "exit 1")},
			failedWith: "app_web.1: exit 1",
		},
		{
			name: "failures from before the deploy do not count", target: deployTarget{before: map[string]bool{"x": true}},
			view:  view(2, 2, nil),
			tasks: []*api.Task{task("x", 1, spec.Task, api.TaskRejected, "old"), task("a", 1, spec.Task, api.TaskRunning, ""), task("b", 2, spec.Task, api.TaskRunning, "")},
			done:  true,
		},
		{
			name: "updated, still on the old spec", target: deployTarget{updated: true, before: map[string]bool{"a": true, "b": true}},
			view:  view(2, 2, &api.UpdateStatus{State: api.UpdateUpdating}),
			tasks: []*api.Task{task("a", 1, oldSpec, api.TaskRunning, ""), task("b", 2, oldSpec, api.TaskRunning, "")},
		},
		{
			name: "updated: networks changed, the update not started yet", target: deployTarget{updated: true, before: map[string]bool{"a": true}},
			view: func() api.ServiceView {
				v := view(1, 1, nil)
				v.Spec.Networks = []string{"n2"}
				return v
			}(),
			tasks: []*api.Task{func() *api.Task {
				tk := task("a", 1, spec.Task, api.TaskRunning, "")
				tk.Networks = []api.NetworkAttachment{{NetworkID: "n1"}}
				return tk
			}()},
		},
		{
			name: "updated and completed", target: deployTarget{updated: true, before: map[string]bool{}},
			view:  view(2, 2, &api.UpdateStatus{State: api.UpdateCompleted}),
			tasks: []*api.Task{task("a", 1, spec.Task, api.TaskRunning, ""), task("b", 2, spec.Task, api.TaskRunning, "")},
			done:  true,
		},
		{
			name: "an update that rolled back failed", target: deployTarget{updated: true, before: map[string]bool{}},
			view:       view(2, 2, &api.UpdateStatus{State: api.UpdateRollbackCompleted, Message: "update rolled back: task failed"}),
			failedWith: "update rollback_completed: update rolled back: task failed",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := progressOf(tt.target, tt.view, tt.tasks)
			if p.done != tt.done {
				t.Errorf("done %v, want %v (%+v)", p.done, tt.done, p)
			}
			if (p.failed != "") != (tt.failedWith != "") || !strings.Contains(p.failed, tt.failedWith) {
				t.Errorf("failed %q, want %q", p.failed, tt.failedWith)
			}
		})
	}
}

// TestStackFileErrors: a file problem is reported before any call to the
// daemon (there is none here: reaching it would be the error).
func TestStackFileErrors(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good := write("good.yml", "services:\n  web:\n    image: ${REG}/web\n    build: .\n    restart: always\n")
	bad := write("bad.yml", "services:\n  web:\n    image: web\n    replicas: 2\n")
	tests := []struct {
		name   string
		args   []string
		code   int
		stdout string
		stderr string
	}{
		{"config prints the merged, interpolated file", []string{"stack", "config", "-c", good}, 0, "image: reg:5000/web", ""},
		{"unknown key: file, line, key", []string{"stack", "deploy", "-c", bad, "app"}, 1, "", "bad.yml:4: services.web.replicas: unknown key \"replicas\""},
		{"ignored keys warn, then the daemon is needed", []string{"stack", "deploy", "-c", good, "app"}, 1, "", "Ignoring unsupported options: build, restart\n\nError: cannot reach the shoal daemon"},
		{"bad stack name", []string{"stack", "deploy", "-c", good, "App"}, 1, "", `stack name "App"`},
		{"no file", []string{"stack", "deploy", "app"}, 1, "", "deploy needs a compose file: -c FILE"},
		{"resolve-image", []string{"stack", "deploy", "-c", good, "--resolve-image", "always", "app"}, 1, "", "--resolve-image \"always\""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ta := newTestApp(t, map[string]string{"SHOAL_DATA_DIR": dir})
			ta.environ = func() []string { return []string{"REG=reg:5000"} }
			if code := ta.run(tt.args...); code != tt.code {
				t.Errorf("exit code %d, want %d; stderr %q", code, tt.code, ta.stderr.String())
			}
			if !strings.Contains(ta.stdout.String(), tt.stdout) {
				t.Errorf("stdout %q: want %q in it", ta.stdout.String(), tt.stdout)
			}
			if !strings.Contains(ta.stderr.String(), tt.stderr) {
				t.Errorf("stderr %q: want %q in it", ta.stderr.String(), tt.stderr)
			}
		})
	}
}
