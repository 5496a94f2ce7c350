package e2e

import (
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/shoal-dev/shoal/api"
)

// convergeTimeout bounds how long tasks may take to reach a wanted state.
const convergeTimeout = 90 * time.Second

// services drives the service scenarios through the manager's CLI.
type services struct {
	c *EngineCluster
	m *Host
}

// run is a CLI command on the manager that must succeed.
func (s *services) run(t testing.TB, args ...string) string {
	t.Helper()
	out, err := s.m.Shoal(args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// wait polls `service ps SVC` until check accepts its tasks, and returns them
// and how long it took.
func (s *services) wait(t testing.TB, svc string, check func(tasks []*api.Task) error) ([]*api.Task, time.Duration) {
	t.Helper()
	var tasks []*api.Task
	d := eventually(t, convergeTimeout, func() error {
		var err error
		tasks, err = Tasks(s.m, svc)
		if err != nil {
			return err
		}
		if err := check(tasks); err != nil {
			return fmt.Errorf("service %s: %w: %s", svc, err, s.c.TaskSummary(tasks))
		}
		return nil
	})
	return tasks, d
}

// perNode counts tasks by hostname.
func (s *services) perNode(tasks []*api.Task) map[string]int {
	out := map[string]int{}
	for _, t := range tasks {
		name := t.NodeID
		if h := s.c.HostByID(t.NodeID); h != nil {
			name = h.Name
		}
		out[name]++
	}
	return out
}

// slots returns the sorted slots of tasks.
func slotsOf(tasks []*api.Task) []uint64 {
	var out []uint64
	for _, t := range tasks {
		out = append(out, t.Slot)
	}
	slices.Sort(out)
	return out
}

// upTo is 1..n.
func upTo(n uint64) []uint64 {
	var out []uint64
	for i := uint64(1); i <= n; i++ {
		out = append(out, i)
	}
	return out
}

// replicas checks that n tasks run, one in each of slots 1..n.
func replicas(n uint64) func([]*api.Task) error {
	return func(tasks []*api.Task) error {
		live := Live(tasks)
		if got, want := slotsOf(live), upTo(n); !slices.Equal(got, want) {
			return fmt.Errorf("running slots: got %v, want %v", got, want)
		}
		return nil
	}
}

// oneRunningPerSlot checks that no slot has two tasks whose status is
// running, whatever their desired state.
func oneRunningPerSlot(tasks []*api.Task) error {
	seen := map[uint64]string{}
	for _, t := range tasks {
		if t.Status.State != api.TaskRunning {
			continue
		}
		if other, ok := seen[t.Slot]; ok {
			return fmt.Errorf("slot %d: tasks %s and %s both running", t.Slot, other, t.ID)
		}
		seen[t.Slot] = t.ID
	}
	return nil
}

// onNode returns the tasks on host h.
func (s *services) onNode(tasks []*api.Task, h *Host) []*api.Task {
	var out []*api.Task
	for _, t := range tasks {
		if t.NodeID == s.c.IDs[h.Name] {
			out = append(out, t)
		}
	}
	return out
}

// containersMatch checks that on each of hosts, the containers running in
// its containerd are exactly the tasks of services meant to run there.
func (s *services) containersMatch(hosts []*Host, svcs ...string) error {
	var all []*api.Task
	for _, svc := range svcs {
		tasks, err := Tasks(s.m, svc)
		if err != nil {
			return err
		}
		all = append(all, tasks...)
	}
	for _, h := range hosts {
		var want []string
		for _, t := range Live(s.onNode(all, h)) {
			want = append(want, t.ID)
		}
		sort.Strings(want)
		got, err := s.c.Engines[h.Name].Running()
		if err != nil {
			return err
		}
		if !slices.Equal(got, want) {
			return fmt.Errorf("%s: containers running: got %v, want the running tasks %v", h.Name, short(got), short(want))
		}
	}
	return nil
}

func short(ids []string) []string {
	out := make([]string, len(ids))
	for i, id := range ids {
		out[i] = id
		if len(id) > 6 {
			out[i] = id[:6]
		}
	}
	return out
}

// ready waits until the manager lists every host of the cluster ready.
func (s *services) ready(t testing.TB) {
	t.Helper()
	eventually(t, serveTimeout, func() error {
		nodes, err := s.m.Nodes()
		if err != nil {
			return err
		}
		for _, h := range s.c.Hosts() {
			n, ok := Node(nodes, h.Name)
			if !ok {
				return fmt.Errorf("node ls has no %s: %s", h.Name, summary(nodes))
			}
			if n.Status.State != api.NodeStateReady || !n.Description.Engine.Available {
				return fmt.Errorf("%s: %q, engine available %v: %s", h.Name, n.Status.State, n.Description.Engine.Available, summary(nodes))
			}
		}
		return nil
	})
}

// TestServices runs the service scenarios, in order, on one cluster of a
// manager and two workers, each with its own containerd, pulling a busybox
// image from a registry on a host of its own.
func TestServices(t *testing.T) {
	requireEngine(t)
	shoalBin(t)
	start := time.Now()
	c := NewEngineCluster(t, 1, 2)
	report(t, "cluster of 1 manager and 2 workers with containerd ready: %.2fs", time.Since(start).Seconds())
	s := &services{c: c, m: c.Managers[0]}
	m, w1, w2 := c.Managers[0], c.Workers[0], c.Workers[1]
	base := []*Host{m, w1, w2}
	spread := func(want map[string]int) func([]*api.Task) error {
		return func(tasks []*api.Task) error {
			if got := s.perNode(Live(tasks)); !maps.Equal(got, want) {
				return fmt.Errorf("running tasks per node: got %v, want %v", got, want)
			}
			return nil
		}
	}
	all := func(checks ...func([]*api.Task) error) func([]*api.Task) error {
		return func(tasks []*api.Task) error {
			for _, f := range checks {
				if err := f(tasks); err != nil {
					return err
				}
			}
			return nil
		}
	}

	t.Run("create_spread", func(t *testing.T) {
		defer c.Net.Bind(t)()
		created := time.Now()
		out := s.run(t, "service", "create", "--name", "web", "--replicas", "6", "--detach", c.Image)
		if id := strings.TrimSpace(out); id == "" {
			t.Errorf("service create printed no ID")
		}
		s.wait(t, "web", all(replicas(6), spread(map[string]int{"m1": 2, "w1": 2, "w2": 2})))
		report(t, "6 replicas running, 2 per node: %.2fs after service create (image pulled by every node)", time.Since(created).Seconds())
		eventually(t, 30*time.Second, func() error { return s.containersMatch(base, "web") })
		var views []api.ServiceView
		out = s.run(t, "service", "ls", "--format", "json")
		if err := json.Unmarshal([]byte(out), &views); err != nil {
			t.Fatalf("service ls --format json: %v: %q", err, out)
		}
		if len(views) != 1 || views[0].Spec.Name != "web" || views[0].Desired != 6 || views[0].Running != 6 {
			t.Errorf("service ls --format json: got %s, want web with 6 of 6 running", out)
		}
		views = nil
		out = s.run(t, "service", "inspect", "web")
		if err := json.Unmarshal([]byte(out), &views); err != nil {
			t.Fatalf("service inspect web: %v: %q", err, out)
		}
		if len(views) != 1 || views[0].Spec.Replicas != 6 || views[0].Spec.Task.Image != c.Image {
			t.Errorf("service inspect web: got %s, want one service with 6 replicas of %s", out, c.Image)
		}
	})

	t.Run("scale", func(t *testing.T) {
		defer c.Net.Bind(t)()
		s.run(t, "service", "scale", "web=12")
		_, d := s.wait(t, "web", replicas(12))
		report(t, "scaled 6 -> 12: %.2fs", d.Seconds())
		s.run(t, "service", "scale", "web=2")
		tasks, d := s.wait(t, "web", func(tasks []*api.Task) error {
			if err := replicas(2)(tasks); err != nil {
				return err
			}
			for _, tk := range tasks {
				if tk.Slot > 2 && (tk.DesiredState == api.TaskRunning || tk.Status.State == api.TaskRunning) {
					return fmt.Errorf("slot %d: task %s still %s (desired %s)", tk.Slot, tk.ID, tk.Status.State, tk.DesiredState)
				}
			}
			return nil
		})
		report(t, "scaled 12 -> 2: %.2fs, slots %v kept", d.Seconds(), slotsOf(Live(tasks)))
		eventually(t, 30*time.Second, func() error { return s.containersMatch(base, "web") })
		s.run(t, "service", "scale", "web=6")
		s.wait(t, "web", all(replicas(6), spread(map[string]int{"m1": 2, "w1": 2, "w2": 2})))
	})

	t.Run("container_killed", func(t *testing.T) {
		defer c.Net.Bind(t)()
		tasks, _ := s.wait(t, "web", replicas(6))
		victims := Live(s.onNode(tasks, w1))
		if len(victims) == 0 {
			t.Fatalf("no running task on %s: %s", w1.Name, c.TaskSummary(tasks))
		}
		old := victims[0]
		ctr, err := c.Engines[w1.Name].Container(old.ID)
		if err != nil {
			t.Fatal(err)
		}
		if ctr.Pid == 0 {
			t.Fatalf("container %s on %s: not running (%q)", old.ID, w1.Name, ctr.Status)
		}
		killed := time.Now()
		if err := syscall.Kill(int(ctr.Pid), syscall.SIGKILL); err != nil {
			t.Fatalf("kill -9 %d: %v", ctr.Pid, err)
		}
		tasks, _ = s.wait(t, "web", func(tasks []*api.Task) error {
			if err := replicas(6)(tasks); err != nil {
				return err
			}
			for _, tk := range tasks {
				if tk.ID == old.ID {
					if tk.Status.State == api.TaskRunning || tk.DesiredState == api.TaskRunning {
						return fmt.Errorf("killed task %s: %s (desired %s)", tk.ID, tk.Status.State, tk.DesiredState)
					}
				}
			}
			return nil
		})
		var repl *api.Task
		for _, tk := range Live(tasks) {
			if tk.Slot == old.Slot {
				repl = tk
			}
		}
		if repl == nil || repl.ID == old.ID {
			t.Fatalf("slot %d: no replacement task running: %s", old.Slot, c.TaskSummary(tasks))
		}
		for _, tk := range tasks {
			if tk.ID == old.ID {
				t.Logf("killed task %s: %s, exit code %d, err %q", tk.ID, tk.Status.State, tk.Status.ExitCode, tk.Status.Err)
			}
		}
		report(t, "container killed: replacement %s running in slot %d after %.2fs", repl.ID, repl.Slot, time.Since(killed).Seconds())
		eventually(t, 30*time.Second, func() error { return s.containersMatch(base, "web") })
	})

	t.Run("agent_restart", func(t *testing.T) {
		defer c.Net.Bind(t)()
		tasks, _ := s.wait(t, "web", replicas(6))
		e := c.Engines[w1.Name]
		before := map[string]uint32{}
		cs, err := e.Containers()
		if err != nil {
			t.Fatal(err)
		}
		for _, ctr := range cs {
			if ctr.Pid != 0 {
				before[ctr.ID] = ctr.Pid
			}
		}
		onW1 := Live(s.onNode(tasks, w1))
		if len(onW1) == 0 || len(before) != len(onW1) {
			t.Fatalf("%s: %d running containers, %d running tasks, want the same and some: %s", w1.Name, len(before), len(onW1), c.TaskSummary(tasks))
		}
		if err := w1.Daemon().Stop(); err != nil {
			t.Errorf("SIGTERM %s: %v", w1.Name, err)
		}
		running, err := e.Running()
		if err != nil {
			t.Fatal(err)
		}
		if got, want := len(running), len(before); got != want {
			t.Errorf("%s: containers running after the agent stopped: got %d, want %d (they outlive the agent)", w1.Name, got, want)
		}
		c.Agent(w1)
		c.WaitServing(t, w1)
		s.ready(t)
		after, _ := s.wait(t, "web", replicas(6))
		if got, want := ids(Live(s.onNode(after, w1))), ids(onW1); !slices.Equal(got, want) {
			t.Errorf("%s: running tasks after agent restart: got %v, want %v (unchanged)", w1.Name, got, want)
		}
		if got, want := ids(Live(after)), ids(Live(tasks)); !slices.Equal(got, want) {
			t.Errorf("running tasks after agent restart: got %v, want %v (unchanged)", got, want)
		}
		cs, err = e.Containers()
		if err != nil {
			t.Fatal(err)
		}
		now := map[string]uint32{}
		for _, ctr := range cs {
			if ctr.Pid != 0 {
				now[ctr.ID] = ctr.Pid
			}
		}
		if !maps.Equal(now, before) {
			t.Errorf("%s: running containers and pids after agent restart: got %v, want %v (adopted, not restarted)", w1.Name, now, before)
		}
	})

	t.Run("node_loss", func(t *testing.T) {
		defer c.Net.Bind(t)()
		tasks, _ := s.wait(t, "web", replicas(6))
		lost := Live(s.onNode(tasks, w2))
		if len(lost) == 0 {
			t.Fatalf("no running task on %s: %s", w2.Name, c.TaskSummary(tasks))
		}
		killed := time.Now()
		w2.Daemon().Kill()
		c.Engines[w2.Name].Kill()
		tasks, _ = s.wait(t, "web", func(tasks []*api.Task) error {
			if err := replicas(6)(tasks); err != nil {
				return err
			}
			if n := len(Live(s.onNode(tasks, w2))); n > 0 {
				return fmt.Errorf("%d tasks still meant to run on lost %s", n, w2.Name)
			}
			return nil
		})
		took := time.Since(killed)
		report(t, "node loss: %.2fs from kill to replacements running", took.Seconds())
		for _, old := range lost {
			for _, tk := range tasks {
				if tk.ID == old.ID && tk.DesiredState == api.TaskRunning {
					t.Errorf("task %s on lost %s: desired state still running", tk.ID, w2.Name)
				}
			}
		}

		back := time.Now()
		c.Engines[w2.Name].Start()
		running, err := c.Engines[w2.Name].Running()
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("%s back: containerd restarted with %d containers still running: %v", w2.Name, len(running), short(running))
		c.Agent(w2)
		c.WaitServing(t, w2)
		s.ready(t)
		tasks, _ = s.wait(t, "web", func(tasks []*api.Task) error {
			if err := replicas(6)(tasks); err != nil {
				return err
			}
			if err := oneRunningPerSlot(tasks); err != nil {
				return err
			}
			for _, tk := range s.onNode(tasks, w2) {
				if tk.DesiredState != api.TaskRunning && !tk.Status.State.Terminal() {
					return fmt.Errorf("stale task %s on %s: %s, want shut down", tk.ID, w2.Name, tk.Status.State)
				}
			}
			return nil
		})
		eventually(t, 30*time.Second, func() error { return s.containersMatch(base, "web") })
		report(t, "lost node back: stale tasks shut down %.2fs after containerd and shoal restarted", time.Since(back).Seconds())
		if err := oneRunningPerSlot(tasks); err != nil {
			t.Errorf("after convergence: %v: %s", err, c.TaskSummary(tasks))
		}
	})

	t.Run("drain", func(t *testing.T) {
		defer c.Net.Bind(t)()
		s.wait(t, "web", replicas(6))
		s.run(t, "node", "update", "--availability", "drain", c.IDs[w1.Name])
		defer s.run(t, "node", "update", "--availability", "active", c.IDs[w1.Name])
		_, d := s.wait(t, "web", func(tasks []*api.Task) error {
			if err := replicas(6)(tasks); err != nil {
				return err
			}
			if n := len(Live(s.onNode(tasks, w1))); n > 0 {
				return fmt.Errorf("%d tasks still running on drained %s", n, w1.Name)
			}
			return nil
		})
		report(t, "drain: tasks moved off %s in %.2fs", w1.Name, d.Seconds())
		eventually(t, 30*time.Second, func() error {
			tasks, err := NodeTasks(m, c.IDs[w1.Name])
			if err != nil {
				return err
			}
			for _, tk := range tasks {
				if tk.DesiredState == api.TaskRunning || tk.Status.State == api.TaskRunning {
					return fmt.Errorf("node ps %s: task %s is %s (desired %s): %s", w1.Name, tk.ID, tk.Status.State, tk.DesiredState, c.TaskSummary(tasks))
				}
			}
			return nil
		})
		eventually(t, 30*time.Second, func() error {
			running, err := c.Engines[w1.Name].Running()
			if err != nil {
				return err
			}
			if len(running) > 0 {
				return fmt.Errorf("%s drained: containers still running: %v", w1.Name, short(running))
			}
			return nil
		})
	})

	t.Run("global", func(t *testing.T) {
		defer c.Net.Bind(t)()
		s.ready(t)
		s.run(t, "service", "create", "--name", "g", "--mode", "global", "--detach", c.Image)
		oneEach := func(hosts ...*Host) func([]*api.Task) error {
			want := map[string]int{}
			for _, h := range hosts {
				want[h.Name] = 1
			}
			return spread(want)
		}
		s.wait(t, "g", oneEach(base...))
		w3 := c.AddWorker(t, "w3")
		joined := time.Now()
		_, _ = s.wait(t, "g", oneEach(append(base, w3)...))
		report(t, "global service: task running on joined %s %.2fs after join", w3.Name, time.Since(joined).Seconds())
		eventually(t, 30*time.Second, func() error { return s.containersMatch([]*Host{w3}, "g", "web") })

		out, err := w3.Shoal("leave")
		if err != nil {
			t.Fatalf("leave: %v", err)
		}
		t.Logf("%s: leave: %s", w3.Name, strings.TrimSpace(out))
		c.Workers = slices.DeleteFunc(c.Workers, func(h *Host) bool { return h == w3 })
		left := time.Now()
		tasks, _ := s.wait(t, "g", func(tasks []*api.Task) error {
			if err := oneEach(base...)(tasks); err != nil {
				return err
			}
			for _, tk := range tasks {
				if tk.NodeID == c.IDs[w3.Name] && tk.DesiredState == api.TaskRunning {
					return fmt.Errorf("task %s on departed %s: desired state still running", tk.ID, w3.Name)
				}
			}
			return nil
		})
		report(t, "global service: task of departed %s gone %.2fs after leave", w3.Name, time.Since(left).Seconds())
		t.Logf("tasks after leave: %s", c.TaskSummary(tasks))
		if p := w3.Daemon(); p != nil {
			if ok, _ := p.Wait(5 * time.Second); ok {
				t.Logf("%s: daemon exited after leave (%s)", w3.Name, p.state())
			} else if err := p.Stop(); err != nil {
				t.Logf("%s: stop after leave: %v", w3.Name, err)
			}
		}
		// As in Swarm, a node that leaves removes its tasks' containers.
		if _, err := poll(30*time.Second, func() error {
			running, err := c.Engines[w3.Name].Running()
			if err != nil {
				return err
			}
			if len(running) > 0 {
				return fmt.Errorf("containers still running: %v", short(running))
			}
			return nil
		}); err != nil {
			t.Errorf("%s after shoal leave: %v", w3.Name, err)
		}
	})

	t.Run("memory_limit_and_logs", func(t *testing.T) {
		defer c.Net.Bind(t)()
		s.run(t, "service", "create", "--name", "mem", "--replicas", "1", "--limit-memory", "64MiB", "--detach",
			c.Image, "sh", "-c", "echo shoal-e2e says hello from $(hostname); exec sleep 3600")
		tasks, _ := s.wait(t, "mem", replicas(1))
		tk := Live(tasks)[0]
		h := c.HostByID(tk.NodeID)
		if h == nil {
			t.Fatalf("task %s on unknown node %s", tk.ID, tk.NodeID)
		}
		ctr, err := c.Engines[h.Name].Container(tk.ID)
		if err != nil {
			t.Fatal(err)
		}
		if ctr.CgroupsPath == "" {
			t.Fatalf("container %s: spec has no cgroups path", tk.ID)
		}
		path := filepath.Join(cgroupRoot, "memory", ctr.CgroupsPath, "memory.limit_in_bytes")
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatalf("read cgroup: %v", err)
		}
		if got, want := strings.TrimSpace(string(b)), "67108864"; got != want {
			t.Errorf("%s: got %s, want %s", path, got, want)
		} else {
			t.Logf("%s = %s", path, got)
		}
		eventually(t, 30*time.Second, func() error {
			out, err := s.m.Shoal("service", "logs", "mem")
			if err != nil {
				return err
			}
			if !strings.Contains(out, "shoal-e2e says hello from "+tk.ID[:min(12, len(tk.ID))]) {
				return fmt.Errorf("service logs mem: want the task's greeting: %q", out)
			}
			t.Logf("service logs mem: %s", strings.TrimSpace(out))
			return nil
		})
	})

	t.Run("unschedulable", func(t *testing.T) {
		defer c.Net.Bind(t)()
		s.run(t, "service", "create", "--name", "nowhere", "--constraint", "node.labels.zone==nowhere", "--detach", c.Image)
		reason := regexp.MustCompile(`(?i)no suitable node.*constraint`)
		tasks, _ := s.wait(t, "nowhere", func(tasks []*api.Task) error {
			if len(tasks) != 1 {
				return fmt.Errorf("got %d tasks, want 1", len(tasks))
			}
			tk := tasks[0]
			if tk.NodeID != "" || tk.Status.State != api.TaskPending {
				return fmt.Errorf("task %s: node %q state %s, want pending on no node", tk.ID, tk.NodeID, tk.Status.State)
			}
			if !reason.MatchString(tk.Status.Err) {
				return fmt.Errorf("task %s: err %q, want it to match %s", tk.ID, tk.Status.Err, reason)
			}
			return nil
		})
		t.Logf("unschedulable task: %s", tasks[0].Status.Err)
		out := s.run(t, "service", "ps", "--no-trunc", "nowhere")
		if !strings.Contains(out, "ERROR") || !reason.MatchString(out) {
			t.Errorf("service ps nowhere: want an ERROR column with the reason:\n%s", out)
		}
		t.Logf("service ps nowhere:\n%s", out)
	})

	t.Run("rm", func(t *testing.T) {
		defer c.Net.Bind(t)()
		s.run(t, "service", "rm", "web", "g", "mem", "nowhere")
		eventually(t, convergeTimeout, func() error {
			out, err := s.m.Shoal("service", "ls", "-q")
			if err != nil {
				return err
			}
			if strings.TrimSpace(out) != "" {
				return fmt.Errorf("service ls -q after rm: %q", out)
			}
			for _, h := range base {
				running, err := c.Engines[h.Name].Running()
				if err != nil {
					return err
				}
				if len(running) > 0 {
					return fmt.Errorf("%s: containers still running after service rm: %v", h.Name, short(running))
				}
			}
			return nil
		})
	})
}

func ids(tasks []*api.Task) []string {
	var out []string
	for _, t := range tasks {
		out = append(out, t.ID)
	}
	sort.Strings(out)
	return out
}
