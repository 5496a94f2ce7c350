package e2e

import (
	"fmt"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/shoal-dev/shoal/agent"
	"github.com/shoal-dev/shoal/api"
)

// TestBoundedWork checks that bursts and failing tasks cost bounded work
// (issue 9, agent work bounded; issue 10, restart default and backoff), on
// real containers: a service removed right after its create starts few or
// none of its tasks, a command that exits at once restarts a few times a
// minute, and a killed container is replaced after the restart delay.
func TestBoundedWork(t *testing.T) {
	requireEngine(t)
	shoalBin(t)
	c := NewEngineCluster(t, 1, 2)
	s := &services{c: c, m: c.Managers[0]}
	hosts := []*Host{c.Managers[0], c.Workers[0], c.Workers[1]}

	t.Run("burst_create_rm", func(t *testing.T) {
		defer c.Net.Bind(t)()
		const replicas = 30
		// Every node pulls the image first, as in a real burst on a fresh
		// service; the grace is short so the stops do not pace the test.
		start := time.Now()
		s.run(t, "service", "create", "--name", "burst", "--replicas", fmt.Sprint(replicas),
			"--stop-grace-period", "1s", "--detach", c.Image)
		// Remove it once every task has reached its node's agent: before
		// the limits, each then started regardless of the rm.
		s.wait(t, "burst", func(tasks []*api.Task) error {
			n := 0
			for _, tk := range tasks {
				if !tk.Status.State.Before(api.TaskAccepted) {
					n++
				}
			}
			if n < replicas {
				return fmt.Errorf("%d of %d tasks accepted by their agent", n, replicas)
			}
			return nil
		})
		assigned := time.Since(start)
		s.run(t, "service", "rm", "burst")
		rmTook := time.Since(start)
		// The removed service's tasks leave the store once their agents
		// report them stopped, whether they started or not: then every
		// runner is done.
		eventually(t, convergeTimeout, func() error {
			for _, h := range hosts {
				tasks, err := NodeTasks(s.m, h.Name)
				if err != nil {
					return err
				}
				for _, tk := range tasks {
					if tk.ServiceName == "burst" {
						return fmt.Errorf("%s: task %s still %s", h.Name, tk.ID, tk.Status.State)
					}
				}
			}
			return nil
		})
		eventually(t, convergeTimeout, func() error {
			for _, h := range hosts {
				cs, err := c.Engines[h.Name].Containers()
				if err != nil {
					return err
				}
				if len(cs) > 0 {
					return fmt.Errorf("%s: %d containers left", h.Name, len(cs))
				}
			}
			return nil
		})
		started := 0
		for _, h := range hosts {
			for _, line := range strings.Split(h.Daemon().Log(), "\n") {
				if strings.Contains(line, `msg="task running"`) && strings.Contains(line, "service=burst") {
					started++
				}
			}
		}
		t.Logf("FIGURE burst: service create --replicas %d, all accepted by their agents after %.2fs, rm done at %.2fs: %d/%d tasks started, all containers gone %.2fs after the create",
			replicas, assigned.Seconds(), rmTook.Seconds(), started, replicas, time.Since(start).Seconds())
		// Before the limits every task started (30/30, the last container
		// gone 35 s after the create). At most the starts in flight when the
		// rm arrives may finish: one start limit per node.
		if bound := len(hosts) * agent.DefaultMaxConcurrentStarts; started > bound {
			t.Errorf("started %d of %d tasks of a service removed once assigned, want at most %d (%d nodes x %d starts at once)",
				started, replicas, bound, len(hosts), agent.DefaultMaxConcurrentStarts)
		}
	})

	// Before the default delay and the backoff: 169 tasks in the first
	// minute (0.2-0.3 s apart); after: 4.
	t.Run("restart_loop", func(t *testing.T) {
		defer c.Net.Bind(t)()
		const window = time.Minute
		start := time.Now()
		s.run(t, "service", "create", "--name", "loop", "--replicas", "1", "--detach", c.Image, "sh", "-c", "exit 1")
		seen := map[string]*api.Task{}
		for time.Since(start) < window {
			tasks, err := Tasks(s.m, "loop")
			if err != nil {
				t.Fatal(err)
			}
			for _, tk := range tasks {
				seen[tk.ID] = tk
			}
			time.Sleep(500 * time.Millisecond) // sampling a window, not waiting for a state
		}
		tasks := make([]*api.Task, 0, len(seen))
		for _, tk := range seen {
			tasks = append(tasks, tk)
		}
		slices.SortFunc(tasks, func(a, b *api.Task) int { return a.Meta.CreatedAt.Compare(b.Meta.CreatedAt) })
		var gaps []string
		for i := 1; i < len(tasks); i++ {
			gaps = append(gaps, fmt.Sprintf("%.1fs", tasks[i].Meta.CreatedAt.Sub(tasks[i-1].Meta.CreatedAt).Seconds()))
		}
		t.Logf("FIGURE restart loop: a command that exits at once made %d tasks in its first %v (one slot); gaps between them %v",
			len(tasks), window, gaps)
		if len(tasks) > 20 {
			t.Errorf("%d tasks in %v for one slot, want at most 20", len(tasks), window)
		}
		if len(tasks) < 2 {
			t.Errorf("%d tasks in %v, want the failed task restarted", len(tasks), window)
		}
		out := s.run(t, "service", "ps", "loop")
		if !strings.Contains(out, "non-zero exit (1)") {
			t.Errorf("service ps loop: want the failures' reason (non-zero exit (1)), got:\n%s", out)
		}
		s.run(t, "service", "rm", "loop")
	})

	t.Run("killed_replaced_after_delay", func(t *testing.T) {
		defer c.Net.Bind(t)()
		s.run(t, "service", "create", "--name", "victim", "--replicas", "1", "--stop-grace-period", "1s", "--detach", c.Image)
		tasks, _ := s.wait(t, "victim", replicas(1))
		old := Live(tasks)[0]
		host := c.HostByID(old.NodeID)
		if host == nil {
			t.Fatalf("task %s on unknown node %s", old.ID, old.NodeID)
		}
		ctr, err := c.Engines[host.Name].Container(old.ID)
		if err != nil {
			t.Fatal(err)
		}
		if ctr.Pid == 0 {
			t.Fatalf("container %s on %s: not running (%q)", old.ID, host.Name, ctr.Status)
		}
		killed := time.Now()
		if err := syscall.Kill(int(ctr.Pid), syscall.SIGKILL); err != nil {
			t.Fatalf("kill -9 %d: %v", ctr.Pid, err)
		}
		s.wait(t, "victim", func(tasks []*api.Task) error {
			live := Live(tasks)
			if len(live) != 1 || live[0].ID == old.ID {
				return fmt.Errorf("no replacement of %s running yet", old.ID)
			}
			return nil
		})
		took := time.Since(killed)
		t.Logf("FIGURE killed container: replacement running %.2fs after kill -9 (restart delay %v)", took.Seconds(), api.DefaultRestartDelay)
		if took < api.DefaultRestartDelay-500*time.Millisecond {
			t.Errorf("replaced after %v, want no sooner than the default restart delay %v", took, api.DefaultRestartDelay)
		}
		s.run(t, "service", "rm", "victim")
	})
}
