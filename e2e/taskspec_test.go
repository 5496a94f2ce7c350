package e2e

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/shoal-dev/shoal/api"
)

// logsOf polls `service logs SVC` until its output holds want, and returns
// the lines without their task prefixes.
func (s *services) logsOf(t testing.TB, svc, want string) string {
	t.Helper()
	var out string
	eventually(t, convergeTimeout, func() error {
		raw, err := s.m.Shoal("service", "logs", svc)
		if err != nil {
			return err
		}
		var b strings.Builder
		for _, line := range strings.Split(raw, "\n") {
			if _, rest, ok := strings.Cut(line, "| "); ok {
				b.WriteString(rest + "\n")
			}
		}
		out = b.String()
		if !strings.Contains(out, want) {
			return fmt.Errorf("service logs %s: no %q yet in %q", svc, want, out)
		}
		return nil
	})
	return out
}

// TestTaskSpec runs the container settings of issue 12 (points 1, 6, 7) in
// real containers on one worker: what the process sees inside (user,
// read-only root, a dropped capability, ulimits, a tmpfs, init, a tty), a named
// volume that keeps its data when the task is replaced on the node and is
// filled from the image, volume ls/rm, a read-only bind mount, and a bind
// mount whose source the node lacks.
func TestTaskSpec(t *testing.T) {
	requireEngine(t)
	shoalBin(t)
	c := NewEngineCluster(t, 1, 1)
	s := &services{c: c, m: c.Managers[0]}
	s.ready(t)
	w := c.Workers[0]

	t.Run("inside", func(t *testing.T) {
		defer c.Net.Bind(t)()
		script := `id -u; id -g; touch /x 2>/dev/null && echo rootfs-rw || echo rootfs-ro; ulimit -n; ulimit -Hn; ` +
			`grep CapBnd /proc/self/status; grep ' /scratch ' /proc/mounts | cut -d' ' -f3,4; ` +
			`echo t > /scratch/f && echo scratch-ok; tr '\0' ' ' < /proc/1/cmdline; echo; echo DONE; sleep 1000`
		s.run(t, "service", "create", "--name", "ts-inside", "--constraint", "node.role==worker",
			"--user", "1000:1000", "--read-only", "--cap-drop", "CHOWN", "--ulimit", "nofile=123:456",
			"--mount", "type=tmpfs,target=/scratch,tmpfs-size=1m", "--init", "--detach", c.Image, "sh", "-c", script)
		out := s.logsOf(t, "ts-inside", "DONE")
		lines := strings.Split(out, "\n")
		if len(lines) < 9 {
			t.Fatalf("output %q", out)
		}
		want := []string{"1000", "1000", "rootfs-ro", "123", "456"}
		for i, w := range want {
			if lines[i] != w {
				t.Errorf("line %d: %q, want %q (output %q)", i, lines[i], w, out)
			}
		}
		capBnd, err := strconv.ParseUint(strings.TrimSpace(strings.TrimPrefix(lines[5], "CapBnd:")), 16, 64)
		if err != nil || capBnd&1 != 0 || capBnd&(1<<5) == 0 {
			t.Errorf("CapBnd %q: want CAP_CHOWN (bit 0) dropped and CAP_KILL (bit 5) kept", lines[5])
		}
		if !strings.HasPrefix(lines[6], "tmpfs rw,") || !strings.Contains(lines[6], "size=1024k") {
			t.Errorf("/scratch mount %q: want a 1 MiB tmpfs", lines[6])
		}
		if lines[7] != "scratch-ok" {
			t.Errorf("tmpfs write: %q", lines[7])
		}
		if !strings.HasPrefix(lines[8], "/sbin/docker-init -- sh -c") {
			t.Errorf("PID 1 is %q, want /sbin/docker-init -- sh -c ...", lines[8])
		}
		s.run(t, "service", "rm", "ts-inside")
	})

	t.Run("tty", func(t *testing.T) {
		defer c.Net.Bind(t)()
		s.run(t, "service", "create", "--name", "ts-tty", "--constraint", "node.role==worker", "--tty", "--detach",
			c.Image, "sh", "-c", `[ -t 1 ] && echo tty-yes || echo tty-no; echo DONE; sleep 1000`)
		if out := s.logsOf(t, "ts-tty", "DONE"); !strings.Contains(out, "tty-yes") {
			t.Errorf("--tty: %q, want a terminal on stdout and its output in the log", out)
		}
		s.run(t, "service", "rm", "ts-tty")
	})

	t.Run("volume", func(t *testing.T) {
		defer c.Net.Bind(t)()
		script := `n=$(( $(cat /data/count 2>/dev/null || echo 0) + 1 )); echo $n > /data/count; echo run $n; ` +
			`cat /www/index.html; echo DONE; sleep 1000`
		s.run(t, "service", "create", "--name", "ts-vol", "--constraint", "node.role==worker",
			"--mount", "type=volume,source=e2edata,target=/data", "--mount", "type=volume,src=e2esite,dst=/www,readonly", "--stop-grace-period", "1s",
			"--detach", c.Image, "sh", "-c", script)
		out := s.logsOf(t, "ts-vol", "DONE")
		if !strings.Contains(out, "run 1\nhello from shoal\n") {
			t.Fatalf("first task: %q, want run 1 and the image's index.html copied into the new volume", out)
		}
		first, _ := s.wait(t, "ts-vol", replicas(1))
		s.run(t, "service", "update", "--force", "--detach", "ts-vol")
		s.wait(t, "ts-vol", func(tasks []*api.Task) error {
			for _, x := range Live(tasks) {
				if x.ID != Live(first)[0].ID && x.Status.State == api.TaskRunning {
					return nil
				}
			}
			return errors.New("no new task running yet")
		})
		if out := s.logsOf(t, "ts-vol", "run 2"); !strings.Contains(out, "run 2") {
			t.Fatalf("after the task was replaced: %q, want run 2 (the count kept in the volume)", out)
		}
		ls := s.run(t, "volume", "ls")
		for _, v := range []string{"e2edata", "e2esite"} {
			if !strings.Contains(ls, v) || !strings.Contains(ls, w.Name) {
				t.Errorf("volume ls: no %s on %s in\n%s", v, w.Name, ls)
			}
		}
		if _, err := s.m.Shoal("volume", "rm", "e2edata"); err == nil || !strings.Contains(err.Error(), "in use") {
			t.Errorf("volume rm of a volume in use: %v, want it refused", err)
		}
		if _, err := os.Stat(filepath.Join(w.DataDir, "volumes", "e2edata", "_data", "count")); err != nil {
			t.Errorf("volume data after a refused rm: %v", err)
		}
		s.run(t, "service", "rm", "ts-vol")
		eventually(t, convergeTimeout, func() error {
			_, err := s.m.Shoal("volume", "rm", "e2edata", "e2esite")
			return err
		})
		if ls := s.run(t, "volume", "ls", w.Name); strings.Contains(ls, "e2edata") {
			t.Errorf("volume ls after rm:\n%s", ls)
		}
	})

	t.Run("bind", func(t *testing.T) {
		defer c.Net.Bind(t)()
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, "f"), []byte("from the node\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		s.run(t, "service", "create", "--name", "ts-bind", "--constraint", "node.role==worker",
			"--mount", "type=bind,source="+dir+",target=/host,readonly", "--detach", c.Image,
			"sh", "-c", `cat /host/f; (echo x > /host/new) 2>/dev/null && echo bind-rw || echo bind-ro; echo DONE; sleep 1000`)
		out := s.logsOf(t, "ts-bind", "DONE")
		if !strings.Contains(out, "from the node\nbind-ro\n") {
			t.Errorf("read-only bind: %q, want the node's file and the write refused", out)
		}
		if _, err := os.Stat(filepath.Join(dir, "new")); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("file written through a read-only bind: %v", err)
		}
		s.run(t, "service", "rm", "ts-bind")

		s.run(t, "service", "create", "--name", "ts-nobind", "--constraint", "node.role==worker",
			"--mount", "type=bind,source=/no/such/dir,target=/host", "--restart-condition", "none", "--detach", c.Image, "sleep", "1000")
		s.wait(t, "ts-nobind", func(tasks []*api.Task) error {
			for _, x := range tasks {
				if x.Status.State == api.TaskRejected && strings.Contains(x.Status.Err, "bind source /no/such/dir does not exist on this node") {
					return nil
				}
			}
			return errors.New("no task rejected for its missing bind source")
		})
		s.run(t, "service", "rm", "ts-nobind")
	})

	t.Run("refused", func(t *testing.T) {
		for _, args := range [][]string{
			{"--cap-add", "FLY"}, {"--ulimit", "nofile=9:1"}, {"--sysctl", "kernel.panic=1"},
			{"--stop-signal", "SIGNOPE"}, {"--mount", "type=tmpfs,target=tmp"},
		} {
			full := append(append([]string{"service", "create", "--name", "ts-bad", "--detach"}, args...), c.Image)
			if _, err := s.m.Shoal(full...); err == nil {
				t.Errorf("%q: accepted", args)
			}
		}
		if out := s.run(t, "service", "ls"); strings.Contains(out, "ts-bad") {
			t.Errorf("a refused service exists:\n%s", out)
		}
	})
}
