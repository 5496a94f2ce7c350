package containerd_test

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	osexec "os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/containerd/containerd"
	"github.com/containerd/containerd/namespaces"

	"github.com/shoal-dev/shoal/internal/testenv"
)

// daemon is a private containerd started for one test.
type daemon struct {
	dir  string
	sock string
}

// requireRoot stops tests that need root, containerd, runc and busybox
// (apt-get install -y containerd runc busybox-static) when they are missing.
func requireRoot(t *testing.T) {
	t.Helper()
	testenv.Root(t)
	for _, bin := range []string{"containerd", "containerd-shim-runc-v2", "runc"} {
		testenv.Command(t, bin)
	}
	testenv.File(t, "/bin/busybox")
}

// startContainerd runs containerd with its own root, state and socket under a
// short temporary directory (unix socket paths are limited to 108 bytes),
// waits for it to answer, and stops it, with every container it ran, when the
// test ends, even on failure.
func startContainerd(t *testing.T) *daemon {
	t.Helper()
	dir, err := os.MkdirTemp("", "ctd")
	if err != nil {
		t.Fatalf("temp dir: %v", err)
	}
	d := &daemon{dir: dir, sock: filepath.Join(dir, "c.sock")}
	cfg := fmt.Sprintf(`version = 2
root = %q
state = %q
disabled_plugins = ["io.containerd.grpc.v1.cri"]

[grpc]
  address = %q

[ttrpc]
  address = %q

[plugins."io.containerd.internal.v1.opt"]
  path = %q
`, filepath.Join(dir, "root"), filepath.Join(dir, "state"), d.sock, d.sock+".ttrpc", filepath.Join(dir, "opt"))
	cfgPath := filepath.Join(dir, "config.toml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatalf("containerd config: %v", err)
	}
	logf, err := os.Create(filepath.Join(dir, "containerd.log"))
	if err != nil {
		t.Fatalf("containerd log: %v", err)
	}
	defer logf.Close()
	cmd := osexec.Command("containerd", "--config", cfgPath, "--address", d.sock,
		"--root", filepath.Join(dir, "root"), "--state", filepath.Join(dir, "state"))
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		os.RemoveAll(dir)
		t.Fatalf("start containerd: %v", err)
	}
	exited := make(chan struct{})
	go func() {
		cmd.Wait()
		close(exited)
	}()
	t.Cleanup(func() { d.stop(t, cmd, exited) })

	deadline := time.Now().Add(15 * time.Second)
	for {
		if _, err := os.Stat(d.sock); err == nil {
			c, err := containerd.New(d.sock, containerd.WithTimeout(time.Second))
			if err == nil {
				ctx, cancel := context.WithTimeout(context.Background(), time.Second)
				_, err = c.Version(ctx)
				cancel()
				c.Close()
				if err == nil {
					return d
				}
			}
		}
		select {
		case <-exited:
			t.Fatalf("containerd exited early; log:\n%s", d.log())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("containerd did not answer on %s in time; log:\n%s", d.sock, d.log())
		}
		time.Sleep(50 * time.Millisecond) // polling a socket, not waiting for state
	}
}

func (d *daemon) log() string {
	b, _ := os.ReadFile(filepath.Join(d.dir, "containerd.log"))
	return string(b)
}

// stop deletes every task and container, stops containerd, then kills any
// shim left behind, unmounts what is mounted under the directory and
// removes it.
func (d *daemon) stop(t *testing.T, cmd *osexec.Cmd, exited chan struct{}) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if c, err := containerd.New(d.sock, containerd.WithTimeout(2*time.Second)); err == nil {
		nss, _ := c.NamespaceService().List(ctx)
		for _, ns := range nss {
			nctx := namespaces.WithNamespace(ctx, ns)
			cs, _ := c.Containers(nctx)
			for _, ctr := range cs {
				if task, err := ctr.Task(nctx, nil); err == nil {
					if _, err := task.Delete(nctx, containerd.WithProcessKill); err != nil {
						t.Logf("cleanup: delete task %s: %v", ctr.ID(), err)
					}
				}
				if err := ctr.Delete(nctx, containerd.WithSnapshotCleanup); err != nil {
					t.Logf("cleanup: delete container %s: %v", ctr.ID(), err)
				}
			}
		}
		c.Close()
	}

	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-exited:
	case <-time.After(10 * time.Second):
		_ = cmd.Process.Kill()
		<-exited
	}

	for _, pid := range shimsOf(d.sock) {
		t.Logf("cleanup: killing leftover shim %d", pid)
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	mounts := mountsUnder(d.dir)
	for i := len(mounts) - 1; i >= 0; i-- {
		if err := syscall.Unmount(mounts[i], syscall.MNT_DETACH); err != nil {
			t.Logf("cleanup: unmount %s: %v", mounts[i], err)
		}
	}
	if err := os.RemoveAll(d.dir); err != nil {
		t.Logf("cleanup: %v", err)
	}
}

// shimsOf lists the pids of shims serving the containerd at sock.
func shimsOf(sock string) []int {
	entries, _ := os.ReadDir("/proc")
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil {
			continue
		}
		args := strings.Split(string(b), "\x00")
		if len(args) > 0 && strings.Contains(args[0], "containerd-shim") && slices.Contains(args, sock) {
			pids = append(pids, pid)
		}
	}
	return pids
}

// mountsUnder lists mount points at or below dir, in mount order.
func mountsUnder(dir string) []string {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) > 4 && (fields[4] == dir || strings.HasPrefix(fields[4], dir+"/")) {
			out = append(out, fields[4])
		}
	}
	return out
}

// newID returns a container ID unique to this test run.
func newID(t *testing.T, name string) string {
	t.Helper()
	b := make([]byte, 4)
	if _, err := rand.Read(b); err != nil {
		t.Fatalf("rand: %v", err)
	}
	return "t" + hex.EncodeToString(b) + "-" + name
}
