package containerd_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/shoal-dev/shoal/agent/exec"
	"github.com/shoal-dev/shoal/api"
)

// TestTaskFiles: a task reads its secret and config at their paths with the
// owner and mode asked; the tmpfs holding them is gone once the task exited,
// and nothing of them is under the state directory then.
func TestTaskFiles(t *testing.T) {
	cfg := setup(t)
	cfg.Files = func(tk *api.Task) ([]exec.File, error) {
		return []exec.File{
			{Kind: "secret", Name: "pw", Path: "/run/secrets/pw", Data: []byte("s3cret-xyzzy"), UID: 100, GID: 101, Mode: 0o400},
			{Kind: "config", Name: "conf", Path: "/etc/app/app.conf", Data: []byte("conf-data"), UID: 0, GID: 0, Mode: 0o444},
		}, nil
	}
	e := newExecutor(t, cfg)
	id := newID(t, "files")
	tk := task(id, api.TaskSpec{
		Command: []string{"sh", "-c", "cat /run/secrets/pw; echo; stat -c '%u:%g:%a' /run/secrets/pw; cat /etc/app/app.conf; echo; stat -c '%a' /etc/app/app.conf; (echo x > /run/secrets/pw) 2>/dev/null || echo readonly"},
		Secrets: []api.SecretReference{{ID: "s", Name: "pw"}},
		Configs: []api.ConfigReference{{ID: "c", Name: "conf"}},
	})
	t.Cleanup(func() { _ = e.Remove(testCtx(t), id) })
	if code := run(t, e, tk); code != 0 {
		b, _ := os.ReadFile(e.Logs(id))
		t.Fatalf("exit %d: %s", code, b)
	}
	b, _ := os.ReadFile(e.Logs(id))
	out := string(b)
	for _, want := range []string{"s3cret-xyzzy\n100:101:400\n", "conf-data\n444\n", "readonly"} {
		if !strings.Contains(out, want) {
			t.Errorf("task output %q lacks %q", out, want)
		}
	}
	if m := mountsUnder(filepath.Join(cfg.StateDir, "files")); len(m) != 0 {
		t.Errorf("tmpfs still mounted after the task exited: %v", m)
	}
	if _, err := os.Stat(filepath.Join(cfg.StateDir, "files", id)); !os.IsNotExist(err) {
		t.Errorf("files dir still there after exit: %v", err)
	}
	// The log holds what the task printed (its choice); nothing else of the state dir may.
	_ = filepath.Walk(cfg.StateDir, func(p string, info os.FileInfo, err error) error {
		if err != nil || info.IsDir() || p == e.Logs(id) {
			return nil
		}
		if data, _ := os.ReadFile(p); strings.Contains(string(data), "s3cret-xyzzy") {
			t.Errorf("%s holds the secret", p)
		}
		return nil
	})
}
