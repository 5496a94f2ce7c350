package agent

import (
	"strings"
	"testing"

	"github.com/shoal-dev/shoal/api"
)

// TestFileStore: secrets are kept while a task that should run references
// them, resolved to files with their owner and mode, and dropped after.
func TestFileStore(t *testing.T) {
	s := newFileStore()
	spec := api.TaskSpec{
		Secrets: []api.SecretReference{{ID: "s1", Name: "pw", Target: "pw", UID: "100", GID: "101", Mode: 0o400}},
		Configs: []api.ConfigReference{{ID: "c1", Name: "conf", Target: "/etc/app.conf", UID: "0", GID: "0", Mode: 0o444}},
	}
	t1 := &api.Task{ID: "t1", Spec: spec, DesiredState: api.TaskRunning, Status: api.TaskStatus{State: api.TaskAssigned}}
	got := api.Assignments{
		Secrets: []*api.Secret{{ID: "s1", Spec: api.SecretSpec{Name: "pw", Data: []byte("s3cret")}}},
		Configs: []*api.Config{{ID: "c1", Spec: api.ConfigSpec{Name: "conf", Data: []byte("c")}}},
	}
	s.update(got, []*api.Task{t1})
	files, err := s.files(t1)
	if err != nil || len(files) != 2 {
		t.Fatalf("files: %v, %v", files, err)
	}
	if f := files[0]; f.Path != "/run/secrets/pw" || string(f.Data) != "s3cret" || f.UID != 100 || f.GID != 101 || f.Mode != 0o400 {
		t.Errorf("secret file %+v", f)
	}
	if f := files[1]; f.Path != "/etc/app.conf" || string(f.Data) != "c" || f.Mode != 0o444 {
		t.Errorf("config file %+v", f)
	}
	// A later answer without them keeps them while t1 should run.
	s.update(api.Assignments{}, []*api.Task{t1})
	if ns, nc := s.held(); ns != 1 || nc != 1 {
		t.Errorf("held %d secrets %d configs, want 1 and 1", ns, nc)
	}
	stopped := *t1
	stopped.DesiredState = api.TaskShutdown
	s.update(api.Assignments{}, []*api.Task{&stopped})
	if ns, nc := s.held(); ns != 0 || nc != 0 {
		t.Errorf("held %d secrets %d configs after the task stopped, want none", ns, nc)
	}
	if _, err := s.files(t1); err == nil || !strings.Contains(err.Error(), "secret pw: not received") {
		t.Errorf("files of a dropped secret: %v", err)
	}
}
