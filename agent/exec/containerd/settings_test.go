package containerd_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	ctrexec "github.com/shoal-dev/shoal/agent/exec/containerd"
	"github.com/shoal-dev/shoal/agent/volume"
	"github.com/shoal-dev/shoal/api"
	"github.com/shoal-dev/shoal/internal/testenv"
	"github.com/shoal-dev/shoal/testimage"
)

// logOf runs a task to its end and returns its exit code and its log.
func logOf(t *testing.T, e *ctrexec.Executor, id string, spec api.TaskSpec) (int, string) {
	t.Helper()
	code := run(t, e, task(id, spec))
	var got []byte
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if got, _ = os.ReadFile(e.Logs(id)); strings.HasSuffix(string(got), "END\n") {
			break
		}
	}
	if err := e.Remove(testCtx(t), id); err != nil {
		t.Errorf("Remove: %v", err)
	}
	return code, string(got)
}

// TestTaskSettings runs the container settings in real containers: what the
// process sees inside is what the spec asked.
func TestTaskSettings(t *testing.T) {
	cfg := setup(t)
	vols, err := volume.New(filepath.Join(t.TempDir(), "volumes"))
	if err != nil {
		t.Fatal(err)
	}
	cfg.Volumes = vols
	// The test binary is the log writer of tty tasks (TestMain).
	if cfg.LogBinary, err = os.Executable(); err != nil {
		t.Fatal(err)
	}
	e := newExecutor(t, cfg)
	bindDir := t.TempDir()
	if err := os.WriteFile(filepath.Join(bindDir, "host.txt"), []byte("from the host\n"), 0o644); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name   string
		spec   api.TaskSpec
		script string
		want   string
	}{
		{"user and groups", api.TaskSpec{User: "1000:1000", Groups: []string{"27"}}, `id -u; id -g; id -G`, "1000\n1000\n1000 27\n"},
		{"read-only rootfs", api.TaskSpec{ReadOnly: true}, `touch /x 2>/dev/null && echo wrote || echo refused`, "refused\n"},
		{"writable rootfs", api.TaskSpec{}, `touch /x 2>/dev/null && echo wrote || echo refused`, "wrote\n"},
		// CAP_CHOWN is bit 0, CAP_NET_RAW bit 13 of the bounding set.
		{"cap-drop", api.TaskSpec{CapDrop: []string{"CAP_CHOWN"}}, `touch /f; chown 5 /f 2>/dev/null && echo chowned || echo refused`, "refused\n"},
		{"cap default", api.TaskSpec{}, `touch /f; chown 5 /f 2>/dev/null && echo chowned || echo refused`, "chowned\n"},
		{"ulimit", api.TaskSpec{Ulimits: []api.Ulimit{{Name: "nofile", Soft: 123, Hard: 456}}}, `ulimit -n; ulimit -Hn`, "123\n456\n"},
		{"tmpfs", api.TaskSpec{Mounts: []api.Mount{{Type: api.MountTmpfs, Target: "/scratch", TmpfsSize: 1 << 20, TmpfsMode: 0o700}}},
			`grep ' /scratch ' /proc/mounts | cut -d' ' -f1,3,4 | tr , '\n' | grep -E '^(tmpfs|size|mode)' ; stat -c %a /scratch`,
			"tmpfs tmpfs rw\nsize=1024k\nmode=700\n700\n"},
		{"bind read-only", api.TaskSpec{Mounts: []api.Mount{{Type: api.MountBind, Source: bindDir, Target: "/host", ReadOnly: true}}},
			`cat /host/host.txt; (echo x > /host/new) 2>/dev/null && echo wrote || echo refused`, "from the host\nrefused\n"},
		{"hostname and hosts", api.TaskSpec{Hostname: "db1", Hosts: []string{"cache:10.1.2.3"}}, `hostname; grep cache /etc/hosts`, "db1\n10.1.2.3\tcache\n"},
		{"dns without networks", api.TaskSpec{DNS: &api.DNSConfig{Nameservers: []string{"10.0.0.2"}, Search: []string{"example"}}}, `cat /etc/resolv.conf`, "nameserver 10.0.0.2\nsearch example\n"},
		{"sysctl", api.TaskSpec{Sysctls: map[string]string{"net.ipv4.ip_unprivileged_port_start": "80"}}, `cat /proc/sys/net/ipv4/ip_unprivileged_port_start`, "80\n"},
		{"entrypoint", api.TaskSpec{Entrypoint: []string{"/bin/echo", "from"}}, ``, "from sh -c \n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			spec := tt.spec
			spec.Command = []string{"sh", "-c", tt.script + "; echo END"}
			want := tt.want + "END\n"
			if tt.name == "entrypoint" {
				spec.Command = []string{"sh", "-c", ""}
				want = "from sh -c \n"
			}
			code, got := logOf(t, e, newID(t, "settings"), spec)
			if tt.name == "entrypoint" {
				got += "END\n"
				want += "END\n"
			}
			if code != 0 || got != want {
				t.Errorf("exit %d, output %q, want %q", code, got, want)
			}
		})
	}

	t.Run("volume filled from the image and kept", func(t *testing.T) {
		m := api.Mount{Type: api.MountVolume, Source: "site", Target: "/www"}
		code, got := logOf(t, e, newID(t, "vol1"), api.TaskSpec{Mounts: []api.Mount{m}, Command: []string{"sh", "-c", "cat /www/index.html; echo kept > /www/mine; echo END"}})
		if code != 0 || got != testimage.IndexHTML+"END\n" {
			t.Fatalf("first task: exit %d, output %q", code, got)
		}
		code, got = logOf(t, e, newID(t, "vol2"), api.TaskSpec{Mounts: []api.Mount{m}, Command: []string{"sh", "-c", "cat /www/mine; echo END"}})
		if code != 0 || got != "kept\nEND\n" {
			t.Fatalf("second task: exit %d, output %q", code, got)
		}
		nocopy := api.Mount{Type: api.MountVolume, Source: "empty", Target: "/www", VolumeNoCopy: true}
		code, got = logOf(t, e, newID(t, "vol3"), api.TaskSpec{Mounts: []api.Mount{nocopy}, Command: []string{"sh", "-c", "ls /www; echo END"}})
		if code != 0 || got != "END\n" {
			t.Fatalf("volume-nocopy: exit %d, output %q", code, got)
		}
	})

	t.Run("volume in use is kept", func(t *testing.T) {
		ctx := testCtx(t)
		id := newID(t, "volbusy")
		if err := e.Prepare(ctx, task(id, api.TaskSpec{Mounts: []api.Mount{{Type: api.MountVolume, Source: "busy", Target: "/d"}}, Command: []string{"sleep", "1000"}})); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { e.Remove(context.Background(), id) })
		if err := e.Start(ctx, id); err != nil {
			t.Fatal(err)
		}
		err := vols.Remove("busy", func(name string) ([]string, error) { return e.VolumeUsers(ctx, name) })
		if !errors.Is(err, volume.ErrInUse) || !strings.Contains(err.Error(), id) {
			t.Fatalf("Remove of a volume in use: %v", err)
		}
		if err := e.Stop(ctx, id, time.Second); err != nil {
			t.Fatal(err)
		}
		if err := vols.Remove("busy", func(name string) ([]string, error) { return e.VolumeUsers(ctx, name) }); err != nil {
			t.Fatalf("Remove once the task exited: %v", err)
		}
	})

	t.Run("bind source missing", func(t *testing.T) {
		id := newID(t, "nobind")
		err := e.Prepare(testCtx(t), task(id, api.TaskSpec{Mounts: []api.Mount{{Type: api.MountBind, Source: "/no/such/dir", Target: "/x"}}}))
		if err == nil || !strings.Contains(err.Error(), "bind source /no/such/dir does not exist on this node") {
			t.Fatalf("Prepare: %v", err)
		}
	})

	t.Run("tty", func(t *testing.T) {
		code, got := logOf(t, e, newID(t, "tty"), api.TaskSpec{TTY: true, Command: []string{"sh", "-c", "[ -t 1 ] && echo tty; echo END"}})
		if code != 0 || strings.ReplaceAll(got, "\r", "") != "tty\nEND\n" {
			t.Errorf("exit %d, output %q", code, got)
		}
	})

	t.Run("init", func(t *testing.T) {
		testenv.Require(t, ctrexec.FindInit() != "", "a static init binary (tini-static, Debian's tini package)")
		code, got := logOf(t, e, newID(t, "init"), api.TaskSpec{Init: true, Command: []string{"sh", "-c", "tr '\\0' ' ' < /proc/1/cmdline; echo; echo END"}})
		if code != 0 || got != ctrexec.InitTarget+" -- sh -c tr '\\0' ' ' < /proc/1/cmdline; echo; echo END \nEND\n" {
			t.Errorf("exit %d, output %q", code, got)
		}
	})

	t.Run("stop signal", func(t *testing.T) {
		ctx := testCtx(t)
		id := newID(t, "stopsig")
		// The shell ignores TERM; only the stop signal asked (USR1) ends it within the grace.
		tk := task(id, api.TaskSpec{StopSignal: "SIGUSR1", Command: []string{"sh", "-c", "trap '' TERM; trap 'echo usr1; exit 7' USR1; echo ready; while true; do sleep 0.1; done"}})
		if err := e.Prepare(ctx, tk); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { e.Remove(context.Background(), id) })
		if err := e.Start(ctx, id); err != nil {
			t.Fatal(err)
		}
		readLogPrefix(t, e, id, "ready\n")
		if err := e.Stop(ctx, id, 20*time.Second); err != nil {
			t.Fatal(err)
		}
		st, _ := status(t, e, id)
		if st.ExitCode != 7 {
			t.Errorf("exit code %d, want 7 (the USR1 trap; %d would be a kill)", st.ExitCode, 128+int(syscall.SIGKILL))
		}
	})
}

func readLogPrefix(t *testing.T, e *ctrexec.Executor, id, want string) {
	t.Helper()
	var got []byte
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if got, _ = os.ReadFile(e.Logs(id)); strings.HasPrefix(string(got), want) {
			return
		}
	}
	t.Fatalf("log %q, want it to start with %q", got, want)
}

// TestMain makes the test binary the log writer of tty tasks, as the shoal
// binary is in production.
func TestMain(m *testing.M) {
	if len(os.Args) == 3 && os.Args[1] == ctrexec.LogWriterArg {
		if err := ctrexec.RunLogWriter(os.Args[2]); err != nil {
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}
