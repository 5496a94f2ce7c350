package e2e

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/shoal-dev/shoal/api"
)

// TestHealthCheck runs health checks in real containers (issue 10, item 4):
// a passing check holds a task starting until it passes, then reports it
// running and healthy; a failing one fails the task with the check's output
// and the restart policy replaces it.
func TestHealthCheck(t *testing.T) {
	requireEngine(t)
	shoalBin(t)
	c := NewEngineCluster(t, 1, 1)
	s := &services{c: c, m: c.Managers[0]}
	s.ready(t)
	// starts records when each task was first seen starting, waiting for
	// its check, as the agent stamped it.
	starts := map[string]time.Time{}
	record := func(tasks []*api.Task) {
		for _, x := range tasks {
			if _, ok := starts[x.ID]; !ok && x.Status.State == api.TaskStarting && x.Status.Health == api.HealthStarting {
				starts[x.ID] = x.Status.Timestamp
			}
		}
	}

	t.Run("healthy", func(t *testing.T) {
		defer c.Net.Bind(t)()
		s.run(t, "service", "create", "--name", "hc-ok", "--replicas", "1", "--constraint", "node.role==worker",
			"--health-cmd", "true", "--health-interval", "1s", "--detach", c.Image)
		var healthy *api.Task
		s.wait(t, "hc-ok", func(tasks []*api.Task) error {
			record(tasks)
			for _, x := range Live(tasks) {
				if x.Status.Health == api.HealthHealthy {
					healthy = x
					return nil
				}
			}
			return fmt.Errorf("no task running and healthy")
		})
		started, ok := starts[healthy.ID]
		if !ok {
			t.Fatalf("task %s never seen starting with health starting before running", healthy.ID)
		}
		report(t, "FIGURE health: container start -> running %.2fs (interval 1s)", healthy.Status.Timestamp.Sub(started).Seconds())
	})

	t.Run("unhealthy", func(t *testing.T) {
		defer c.Net.Bind(t)()
		s.run(t, "service", "create", "--name", "hc-sick", "--replicas", "1", "--constraint", "node.role==worker",
			"--health-cmd", "echo sick; exit 1", "--health-interval", "1s", "--health-retries", "2", "--detach", c.Image)
		var failed *api.Task
		s.wait(t, "hc-sick", func(tasks []*api.Task) error {
			record(tasks)
			failed = nil
			for _, x := range tasks {
				if x.Status.State == api.TaskFailed && strings.Contains(x.Status.Err, "sick") {
					failed = x
				}
			}
			if failed == nil {
				return fmt.Errorf("no task failed with the check's output")
			}
			for _, x := range tasks {
				if x.ID != failed.ID && x.Slot == failed.Slot && x.DesiredState == api.TaskRunning {
					return nil
				}
			}
			return fmt.Errorf("task %s failed, no replacement yet", failed.ID)
		})
		if failed.Status.Health != api.HealthUnhealthy {
			t.Errorf("failed task %s: health %q, want unhealthy", failed.ID, failed.Status.Health)
		}
		if out := s.run(t, "service", "ps", "--no-trunc", "hc-sick"); !strings.Contains(out, "unhealthy: sick") {
			t.Errorf("service ps --no-trunc: want the check's output in the error, got\n%s", out)
		}
		started, ok := starts[failed.ID]
		if !ok {
			t.Fatalf("task %s never seen starting with health starting before it failed", failed.ID)
		}
		report(t, "FIGURE health: unhealthy detected after %.2fs (interval 1s, retries 2)", failed.Status.Timestamp.Sub(started).Seconds())
	})
}
