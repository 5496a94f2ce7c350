package containerd_test

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/containerd/containerd"

	"github.com/shoal-dev/shoal/agent/exec"
	ctrexec "github.com/shoal-dev/shoal/agent/exec/containerd"
	"github.com/shoal-dev/shoal/api"
	"github.com/shoal-dev/shoal/internal/testenv"
	"github.com/shoal-dev/shoal/testimage"
)

const imageRef = testimage.DefaultRef

// setup starts a private containerd, imports the test image and returns a
// config for executors on it.
func setup(t *testing.T) ctrexec.Config {
	t.Helper()
	requireRoot(t)
	d := startContainerd(t)
	im, err := testimage.Build("")
	if err != nil {
		t.Fatalf("build image: %v", err)
	}
	c, err := containerd.New(d.sock, containerd.WithDefaultNamespace(ctrexec.DefaultNamespace))
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := im.Import(ctx, c, imageRef, ""); err != nil {
		t.Fatalf("import image: %v", err)
	}
	return ctrexec.Config{Address: d.sock, StateDir: filepath.Join(d.dir, "agent")}
}

func newExecutor(t *testing.T, cfg ctrexec.Config) *ctrexec.Executor {
	t.Helper()
	e, err := ctrexec.New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { e.Close() })
	return e
}

func task(id string, spec api.TaskSpec) *api.Task {
	if spec.Image == "" {
		spec.Image = imageRef
	}
	return &api.Task{ID: id, ServiceID: "svc1", ServiceName: "web", Slot: 2, Spec: spec}
}

func testCtx(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// run prepares and starts t, and waits for it to exit.
func run(t *testing.T, e exec.Executor, tk *api.Task) int {
	t.Helper()
	ctx := testCtx(t)
	if err := e.Prepare(ctx, tk); err != nil {
		t.Fatalf("Prepare: %v", err)
	}
	if err := e.Start(ctx, tk.ID); err != nil {
		t.Fatalf("Start: %v", err)
	}
	code, err := e.Wait(ctx, tk.ID)
	if err != nil {
		t.Fatalf("Wait: %v", err)
	}
	return code
}

// readLog polls the task's log file until it holds want or the deadline passes.
func readLog(t *testing.T, e exec.Executor, id, want string) {
	t.Helper()
	var got []byte
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		got, _ = os.ReadFile(e.Logs(id))
		if string(got) == want {
			return
		}
	}
	t.Errorf("log: got %q, want %q", got, want)
}

func status(t *testing.T, e exec.Executor, id string) (exec.ContainerStatus, bool) {
	t.Helper()
	list, err := e.List(testCtx(t))
	if err != nil {
		t.Fatalf("List: %v", err)
	}
	for _, st := range list {
		if st.TaskID == id {
			return st, true
		}
	}
	return exec.ContainerStatus{}, false
}

func TestExecutor(t *testing.T) {
	cfg := setup(t)
	e := newExecutor(t, cfg)

	t.Run("processes", func(t *testing.T) {
		tests := []struct {
			name     string
			spec     api.TaskSpec
			wantCode int
			wantLog  string
		}{
			{"echo", api.TaskSpec{Command: []string{"echo", "hello"}}, 0, "hello\n"},
			{"exit-code", api.TaskSpec{Command: []string{"sh", "-c", "exit 3"}}, 3, ""},
			// The short sleep works around containerd 1.6's shim, which now and
			// then drops the stderr of a process that exits at once (seen about
			// once in ten runs on a loaded machine).
			{"stderr", api.TaskSpec{Command: []string{"sh", "-c", "echo oops >&2; sleep 0.2; exit 1"}}, 1, "oops\n"},
			{"env-workdir", api.TaskSpec{
				Command: []string{"sh", "-c", `echo "$FOO $(pwd) $PATH"`},
				Env:     []string{"FOO=bar"},
				Workdir: "/www",
			}, 0, "bar /www /usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\n"},
			{"user", api.TaskSpec{Command: []string{"id", "-u"}, User: "nobody"}, 0, "65534\n"},
			{"image-files", api.TaskSpec{
				Command: []string{"cat", "/www/index.html"},
			}, 0, testimage.IndexHTML},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				t.Parallel()
				id := newID(t, tt.name)
				if got := run(t, e, task(id, tt.spec)); got != tt.wantCode {
					t.Errorf("exit code: got %d, want %d", got, tt.wantCode)
				}
				readLog(t, e, id, tt.wantLog)
				st, ok := status(t, e, id)
				if !ok {
					t.Fatalf("List lacks %s", id)
				}
				if st.State != exec.StateExited || st.ExitCode != tt.wantCode {
					t.Errorf("List: got %s/%d, want %s/%d", st.State, st.ExitCode, exec.StateExited, tt.wantCode)
				}
				if err := e.Start(testCtx(t), id); !errors.Is(err, exec.ErrExited) {
					t.Errorf("Start after exit: got %v, want %v", err, exec.ErrExited)
				}
				if err := e.Remove(testCtx(t), id); err != nil {
					t.Fatalf("Remove: %v", err)
				}
				if _, ok := status(t, e, id); ok {
					t.Errorf("List still has %s after Remove", id)
				}
				if _, err := os.Stat(e.Logs(id)); !errors.Is(err, os.ErrNotExist) {
					t.Errorf("log after Remove: got %v, want %v", err, os.ErrNotExist)
				}
			})
		}
	})

	t.Run("limits", func(t *testing.T) {
		t.Parallel()
		ctx := testCtx(t)
		id := newID(t, "limits")
		tk := task(id, api.TaskSpec{
			Command:   []string{"sleep", "1000"},
			Resources: api.Resources{Limits: api.ResourceAmounts{MemoryBytes: 64 << 20, NanoCPUs: 500_000_000}},
		})
		if err := e.Prepare(ctx, tk); err != nil {
			t.Fatalf("Prepare: %v", err)
		}
		if err := e.Start(ctx, id); err != nil {
			t.Fatalf("Start: %v", err)
		}
		t.Cleanup(func() { e.Remove(context.Background(), id) })
		c, err := e.Client().LoadContainer(ctx, id)
		if err != nil {
			t.Fatalf("LoadContainer: %v", err)
		}
		spec, err := c.Spec(ctx)
		if err != nil {
			t.Fatalf("Spec: %v", err)
		}
		cg := spec.Linux.CgroupsPath
		for _, f := range []struct{ path, want string }{
			{filepath.Join("/sys/fs/cgroup/memory", cg, "memory.limit_in_bytes"), "67108864"},
			{filepath.Join("/sys/fs/cgroup/cpu", cg, "cpu.cfs_quota_us"), "50000"},
			{filepath.Join("/sys/fs/cgroup/cpu", cg, "cpu.cfs_period_us"), "100000"},
		} {
			b, err := os.ReadFile(f.path)
			if err != nil {
				t.Errorf("read cgroup: %v", err)
				continue
			}
			if got := strings.TrimSpace(string(b)); got != f.want {
				t.Errorf("%s: got %s, want %s", f.path, got, f.want)
			}
		}
		for _, ns := range spec.Linux.Namespaces {
			if ns.Type == "network" && ns.Path != "" {
				t.Errorf("network namespace: got path %q, want a new one", ns.Path)
			}
		}
		st, ok := status(t, e, id)
		if !ok || st.State != exec.StateRunning || st.Pid == 0 {
			t.Fatalf("List: got %+v (found %v), want running with a pid", st, ok)
		}
		self, _ := os.Readlink("/proc/self/ns/net")
		theirs, err := os.Readlink(filepath.Join("/proc", itoa(st.Pid), "ns/net"))
		if err != nil || theirs == self {
			t.Errorf("container netns: got %q (%v), want other than the host's %q", theirs, err, self)
		}
	})

	t.Run("stop-kills-after-grace", func(t *testing.T) {
		t.Parallel()
		ctx := testCtx(t)
		id := newID(t, "stubborn")
		// sh is pid 1 and ignores TERM; so does sleep, which inherits the disposition.
		tk := task(id, api.TaskSpec{Command: []string{"sh", "-c", `trap "" TERM; sleep 1000`}})
		if err := e.Prepare(ctx, tk); err != nil {
			t.Fatalf("Prepare: %v", err)
		}
		if err := e.Start(ctx, id); err != nil {
			t.Fatalf("Start: %v", err)
		}
		t.Cleanup(func() { e.Remove(context.Background(), id) })
		const grace = 300 * time.Millisecond
		start := time.Now()
		if err := e.Stop(ctx, id, grace); err != nil {
			t.Fatalf("Stop: %v", err)
		}
		if took := time.Since(start); took < grace || took > grace+20*time.Second {
			t.Errorf("Stop took %v, want at least the grace %v and not much more", took, grace)
		}
		code, err := e.Wait(ctx, id)
		if err != nil || code != 137 {
			t.Errorf("Wait: got %d, %v, want 137 (SIGKILL)", code, err)
		}
		if err := e.Stop(ctx, id, grace); err != nil {
			t.Errorf("Stop on an exited task: %v", err)
		}
	})

	t.Run("stop-honours-sigterm", func(t *testing.T) {
		t.Parallel()
		ctx := testCtx(t)
		id := newID(t, "polite")
		tk := task(id, api.TaskSpec{Command: []string{"sh", "-c", `trap "exit 0" TERM; sleep 1000 & wait`}})
		if err := e.Prepare(ctx, tk); err != nil {
			t.Fatalf("Prepare: %v", err)
		}
		if err := e.Start(ctx, id); err != nil {
			t.Fatalf("Start: %v", err)
		}
		t.Cleanup(func() { e.Remove(context.Background(), id) })
		// The trap must be set before TERM comes: wait for the sleep child.
		waitFor(t, func() bool {
			st, _ := status(t, e, id)
			kids, _ := os.ReadFile(filepath.Join("/proc", itoa(st.Pid), "task", itoa(st.Pid), "children"))
			return len(strings.TrimSpace(string(kids))) > 0
		})
		if err := e.Stop(ctx, id, time.Minute); err != nil {
			t.Fatalf("Stop: %v", err)
		}
		code, err := e.Wait(ctx, id)
		if err != nil || code != 0 {
			t.Errorf("Wait: got %d, %v, want 0 (exited on SIGTERM)", code, err)
		}
	})

	t.Run("errors", func(t *testing.T) {
		t.Parallel()
		ctx := testCtx(t)
		missing := newID(t, "missing")
		if err := e.Start(ctx, missing); !errors.Is(err, exec.ErrNotFound) {
			t.Errorf("Start missing: got %v, want %v", err, exec.ErrNotFound)
		}
		if _, err := e.Wait(ctx, missing); !errors.Is(err, exec.ErrNotFound) {
			t.Errorf("Wait missing: got %v, want %v", err, exec.ErrNotFound)
		}
		if err := e.Stop(ctx, missing, time.Second); err != nil {
			t.Errorf("Stop missing: got %v, want nil", err)
		}
		if err := e.Remove(ctx, missing); err != nil {
			t.Errorf("Remove missing: got %v, want nil", err)
		}

		id := newID(t, "unstarted")
		if err := e.Prepare(ctx, task(id, api.TaskSpec{Command: []string{"true"}})); err != nil {
			t.Fatalf("Prepare: %v", err)
		}
		t.Cleanup(func() { e.Remove(context.Background(), id) })
		if _, err := e.Wait(ctx, id); !errors.Is(err, exec.ErrNotStarted) {
			t.Errorf("Wait unstarted: got %v, want %v", err, exec.ErrNotStarted)
		}
		if st, ok := status(t, e, id); !ok || st.State != exec.StateCreated {
			t.Errorf("List: got %+v (found %v), want created", st, ok)
		}

		bad := newID(t, "noimage")
		if err := e.Prepare(ctx, task(bad, api.TaskSpec{Image: "127.0.0.1:1/nosuch:latest"})); err == nil {
			t.Errorf("Prepare with an unreachable image: got nil error")
		}
		if _, ok := status(t, e, bad); ok {
			t.Errorf("List has %s after a failed Prepare", bad)
		}

		noexec := newID(t, "noexec")
		if err := e.Prepare(ctx, task(noexec, api.TaskSpec{Command: []string{"/nosuch"}})); err != nil {
			t.Fatalf("Prepare: %v", err)
		}
		t.Cleanup(func() { e.Remove(context.Background(), noexec) })
		if err := e.Start(ctx, noexec); err == nil {
			t.Errorf("Start of a missing executable: got nil error")
		}
	})

	t.Run("adopt", func(t *testing.T) {
		t.Parallel()
		ctx := testCtx(t)
		first, err := ctrexec.New(cfg)
		if err != nil {
			t.Fatalf("New: %v", err)
		}
		id := newID(t, "adopt")
		tk := task(id, api.TaskSpec{Command: []string{"sleep", "1000"}})
		if err := first.Prepare(ctx, tk); err != nil {
			t.Fatalf("Prepare: %v", err)
		}
		if err := first.Start(ctx, id); err != nil {
			t.Fatalf("Start: %v", err)
		}
		before, _ := status(t, first, id)
		first.Close() // the agent goes away; the container must not

		second := newExecutor(t, cfg)
		t.Cleanup(func() { second.Remove(context.Background(), id) })
		st, ok := status(t, second, id)
		want := exec.ContainerStatus{TaskID: id, ServiceID: "svc1", ServiceName: "web", Slot: 2,
			Image: imageRef, State: exec.StateRunning, Pid: before.Pid}
		if !ok || !reflect.DeepEqual(st, want) {
			t.Fatalf("List: got %+v (found %v), want %+v", st, ok, want)
		}
		if err := second.Prepare(ctx, tk); err != nil {
			t.Errorf("Prepare of an existing container: %v", err)
		}
		if err := second.Start(ctx, id); err != nil {
			t.Errorf("Start of a running container: %v", err)
		}
		type result struct {
			code int
			err  error
		}
		done := make(chan result, 1)
		go func() {
			code, err := second.Wait(ctx, id)
			done <- result{code, err}
		}()
		if err := second.Stop(ctx, id, 100*time.Millisecond); err != nil {
			t.Fatalf("Stop: %v", err)
		}
		if r := <-done; r.err != nil || r.code != 137 {
			t.Errorf("Wait: got %d, %v, want 137", r.code, r.err)
		}
	})

	t.Run("exec", func(t *testing.T) {
		t.Parallel()
		ctx := testCtx(t)
		id := newID(t, "exec")
		tk := task(id, api.TaskSpec{Command: []string{"sleep", "1000"}, Env: []string{"FOO=bar"}, Workdir: "/www"})
		t.Cleanup(func() { e.Remove(context.Background(), id) })
		if err := e.Prepare(ctx, tk); err != nil {
			t.Fatalf("Prepare: %v", err)
		}
		if _, _, err := e.Exec(ctx, id, []string{"true"}); !errors.Is(err, exec.ErrNotStarted) {
			t.Errorf("Exec before Start: got %v, want ErrNotStarted", err)
		}
		if err := e.Start(ctx, id); err != nil {
			t.Fatalf("Start: %v", err)
		}
		code, out, err := e.Exec(ctx, id, []string{"sh", "-c", `echo "$FOO $(pwd)"; echo oops >&2; exit 3`})
		if err != nil || code != 3 || !strings.Contains(out, "bar /www\n") || !strings.Contains(out, "oops\n") {
			t.Errorf("Exec: got %d %q %v, want 3 with 'bar /www' and 'oops'", code, out, err)
		}
		code, out, err = e.Exec(ctx, id, []string{"sh", "-c", "i=0; while [ $i -lt 1000 ]; do echo 0123456789; i=$((i+1)); done"})
		if err != nil || code != 0 || len(out) != api.MaxHealthOutput {
			t.Errorf("chatty Exec: got %d, %d bytes, %v; want 0, %d bytes", code, len(out), err, api.MaxHealthOutput)
		}
		tctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
		defer cancel()
		if _, _, err := e.Exec(tctx, id, []string{"sleep", "30"}); !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("Exec past its timeout: got %v, want a deadline error", err)
		}
		hc, err := e.ImageHealthcheck(ctx, imageRef)
		if err != nil || hc != nil {
			t.Errorf("ImageHealthcheck of an image with none: got %+v, %v", hc, err)
		}
	})
}

func TestPullFromRegistry(t *testing.T) {
	cfg := setup(t)
	testenv.Command(t, testimage.RegistryBinary)
	ctx := testCtx(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	addr := l.Addr().String()
	l.Close()
	reg, err := testimage.StartRegistry(ctx, t.TempDir(), addr)
	if err != nil {
		t.Fatalf("StartRegistry: %v", err)
	}
	t.Cleanup(func() { reg.Close() })
	im, err := testimage.Build("")
	if err != nil {
		t.Fatalf("Build: %v", err)
	}
	ref := addr + "/shoal/busybox:v1"
	if err := im.Push(ctx, nil, ref); err != nil {
		t.Fatalf("Push: %v", err)
	}

	cfg.InsecureRegistries = []string{addr}
	e := newExecutor(t, cfg)
	id := newID(t, "pulled")
	if got := run(t, e, task(id, api.TaskSpec{Image: ref, Command: []string{"echo", "pulled"}})); got != 0 {
		t.Errorf("exit code: got %d, want 0", got)
	}
	readLog(t, e, id, "pulled\n")
	if err := e.Remove(ctx, id); err != nil {
		t.Errorf("Remove: %v", err)
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatalf("condition not met in time")
}

func itoa(n uint32) string { return strconv.FormatUint(uint64(n), 10) }
