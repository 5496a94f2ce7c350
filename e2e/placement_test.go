package e2e

import (
	"encoding/json"
	"fmt"
	"maps"
	"strings"
	"testing"
	"time"

	"github.com/shoal-dev/shoal/api"
)

// TestPlacementAndJobs runs, on one manager and two workers with real
// containers, the placement preferences, the cap of replicas per node and a
// replicated job (issue 12 points 4, 5 and their part of 7).
func TestPlacementAndJobs(t *testing.T) {
	requireEngine(t)
	shoalBin(t)
	c := NewEngineCluster(t, 1, 2)
	s := &services{c: c, m: c.Managers[0]}
	zones := map[string]string{"m1": "a", "w1": "a", "w2": "b"}
	for _, h := range c.Hosts() {
		s.run(t, "node", "update", "--label-add", "zone="+zones[h.Name], h.Name)
	}
	byZone := func(tasks []*api.Task) map[string]int {
		out := map[string]int{}
		for node, n := range s.perNode(tasks) {
			out[zones[node]] += n
		}
		return out
	}

	t.Run("spread_over_zones", func(t *testing.T) {
		defer c.Net.Bind(t)()
		s.run(t, "service", "create", "--name", "spread", "--replicas", "6", "--placement-pref", "spread=node.labels.zone", "--detach", c.Image)
		tasks, d := s.wait(t, "spread", func(tasks []*api.Task) error {
			if err := replicas(6)(tasks); err != nil {
				return err
			}
			if got, want := byZone(Live(tasks)), map[string]int{"a": 3, "b": 3}; !maps.Equal(got, want) {
				return fmt.Errorf("running tasks per zone: got %v, want %v", got, want)
			}
			return nil
		})
		report(t, "spread=node.labels.zone over zones a,a,b: 6 replicas %v by zone, %v by node, running %.2fs after create",
			byZone(Live(tasks)), s.perNode(Live(tasks)), d.Seconds())
		if _, err := s.m.Shoal("service", "create", "--name", "bad", "--placement-pref", "spread=foo", "--detach", c.Image); err == nil ||
			!strings.Contains(err.Error(), `spread descriptor "foo": want node.labels.NAME`) {
			t.Errorf("create with spread=foo: got %v, want a refusal naming the descriptor", err)
		}
		s.run(t, "service", "rm", "spread")
	})

	t.Run("max_replicas_per_node", func(t *testing.T) {
		defer c.Net.Bind(t)()
		const reason = "no suitable node (max replicas per node (1) reached on 3 nodes)"
		s.run(t, "service", "create", "--name", "capped", "--replicas", "4", "--replicas-max-per-node", "1", "--detach", c.Image)
		tasks, _ := s.wait(t, "capped", func(tasks []*api.Task) error {
			if got, want := s.perNode(Live(tasks)), map[string]int{"m1": 1, "w1": 1, "w2": 1}; !maps.Equal(got, want) {
				return fmt.Errorf("running per node: got %v, want %v", got, want)
			}
			for _, tk := range tasks {
				if tk.Status.State == api.TaskPending && tk.Status.Err == reason {
					return nil
				}
			}
			return fmt.Errorf("no pending task explained %q", reason)
		})
		out := s.run(t, "service", "ps", "--no-trunc", "capped")
		if !strings.Contains(out, reason) {
			t.Errorf("service ps shows no %q:\n%s", reason, out)
		}
		report(t, "replicas-max-per-node 1, 4 replicas on 3 nodes: %v running, one pending: %q", s.perNode(Live(tasks)), reason)
		// Raising the cap places the fourth.
		s.run(t, "service", "update", "--detach", "--replicas-max-per-node", "2", "capped")
		s.wait(t, "capped", replicas(4))
		s.run(t, "service", "rm", "capped")
	})

	t.Run("replicated_job", func(t *testing.T) {
		defer c.Net.Bind(t)()
		s.run(t, "service", "create", "--name", "batch", "--mode", "replicated-job", "--replicas", "5", "--max-concurrent", "2",
			"--detach", c.Image, "sh", "-c", "sleep 2")
		maxActive, d := s.watchJob(t, "batch", 0)
		report(t, "replicated-job of 5, max-concurrent 2: at most %d tasks active at once, 5/5 completed %.2fs after create", maxActive, d.Seconds())
		out := s.run(t, "service", "ls")
		if !strings.Contains(out, "(5/5 completed)") {
			t.Errorf("service ls shows no (5/5 completed):\n%s", out)
		}
		out = s.run(t, "service", "ps", "batch")
		if n := strings.Count(out, "Complete"); n < 10 { // desired and current state of 5 tasks
			t.Errorf("service ps: want 5 complete tasks:\n%s", out)
		}

		start := time.Now()
		s.run(t, "service", "update", "--detach", "--force", "batch")
		maxActive, _ = s.watchJob(t, "batch", 1)
		report(t, "update --force reran it: at most %d active, 5/5 completed again %.2fs after the update", maxActive, time.Since(start).Seconds())
		tasks, err := Tasks(s.m, "batch")
		if err != nil {
			t.Fatal(err)
		}
		first := 0
		for _, tk := range tasks {
			if tk.JobIteration == 0 && tk.Status.State == api.TaskComplete {
				first++
			}
		}
		if first != 5 {
			t.Errorf("the first run's 5 complete tasks should stay listed: got %d: %s", first, c.TaskSummary(tasks))
		}
		s.run(t, "service", "rm", "batch")
	})

	t.Run("global_job", func(t *testing.T) {
		defer c.Net.Bind(t)()
		s.run(t, "service", "create", "--name", "once", "--mode", "global-job", "--detach", c.Image, "true")
		tasks, d := s.wait(t, "once", func(tasks []*api.Task) error {
			done := map[string]int{}
			for _, tk := range tasks {
				if tk.Status.State == api.TaskComplete && tk.DesiredState == api.TaskComplete {
					done[tk.NodeID]++
				}
			}
			if len(done) != 3 || len(tasks) != 3 {
				return fmt.Errorf("want one complete task on each of 3 nodes and no other")
			}
			return nil
		})
		out := s.run(t, "service", "ls")
		if !strings.Contains(out, "(3/3 completed)") {
			t.Errorf("service ls shows no (3/3 completed):\n%s", out)
		}
		report(t, "global-job: %d tasks complete, one per node, %.2fs after create", len(tasks), d.Seconds())
		s.run(t, "service", "rm", "once")
	})
}

// watchJob polls a replicated job of 5 in run iteration until all 5
// complete, failing if more than 2 of that run's tasks are ever active
// (assigned to a node and not finished), and returns the most seen at
// once and how long it took.
func (s *services) watchJob(t *testing.T, svc string, iteration uint64) (int, time.Duration) {
	t.Helper()
	maxActive := 0
	d := eventually(t, convergeTimeout, func() error {
		tasks, err := Tasks(s.m, svc)
		if err != nil {
			return err
		}
		active, complete := 0, 0
		for _, tk := range tasks {
			if tk.JobIteration != iteration {
				continue
			}
			switch st := tk.Status.State; {
			case st == api.TaskComplete:
				complete++
			case !st.Before(api.TaskAssigned) && !st.Terminal():
				active++
			}
		}
		maxActive = max(maxActive, active)
		if maxActive > 2 {
			t.Fatalf("%d tasks of %s active at once, want at most 2: %s", active, svc, s.c.TaskSummary(tasks))
		}
		if complete != 5 {
			return fmt.Errorf("%d/5 complete: %s", complete, s.c.TaskSummary(tasks))
		}
		var views []api.ServiceView
		out, err := s.m.Shoal("service", "inspect", svc)
		if err != nil {
			return err
		}
		if err := json.Unmarshal([]byte(out), &views); err != nil || len(views) != 1 {
			return fmt.Errorf("service inspect %s: %v: %q", svc, err, out)
		}
		if v := views[0]; v.Completed != 5 || v.Desired != 5 || v.JobIteration != iteration {
			return fmt.Errorf("service view: completed %d desired %d iteration %d", v.Completed, v.Desired, v.JobIteration)
		}
		return nil
	})
	return maxActive, d
}
