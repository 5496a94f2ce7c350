package agent

import (
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/shoal-dev/shoal/api"
)

func TestHealthState(t *testing.T) {
	cfg := api.HealthConfig{Test: []string{"CMD", "x"}, Interval: time.Second, Timeout: time.Second, Retries: 3, StartPeriod: 10 * time.Second}
	at := func(s int) time.Time { return epoch.Add(time.Duration(s) * time.Second) }
	pass := func(s int) checkResult { return checkResult{ok: true, at: at(s)} }
	fail := func(s int) checkResult { return checkResult{at: at(s)} }
	for _, tc := range []struct {
		name    string
		start   api.Health
		results []checkResult
		want    []api.Health // health after each result
	}{
		{"first pass is healthy", api.HealthStarting, []checkResult{pass(1), pass(2)},
			[]api.Health{api.HealthHealthy, api.HealthHealthy}},
		{"failures in the start period do not count", api.HealthStarting,
			[]checkResult{fail(1), fail(2), fail(3), fail(4), pass(5)},
			[]api.Health{api.HealthStarting, api.HealthStarting, api.HealthStarting, api.HealthStarting, api.HealthHealthy}},
		{"after the start period retries fail it", api.HealthStarting,
			[]checkResult{fail(9), fail(10), fail(11), fail(12)},
			[]api.Health{api.HealthStarting, api.HealthStarting, api.HealthStarting, api.HealthUnhealthy}},
		{"once healthy the start period is over", api.HealthStarting,
			[]checkResult{pass(1), fail(2), fail(3), fail(4)},
			[]api.Health{api.HealthHealthy, api.HealthHealthy, api.HealthHealthy, api.HealthUnhealthy}},
		{"a pass clears the streak", api.HealthHealthy,
			[]checkResult{fail(20), fail(21), pass(22), fail(23), fail(24)},
			[]api.Health{api.HealthHealthy, api.HealthHealthy, api.HealthHealthy, api.HealthHealthy, api.HealthHealthy}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHealthState(cfg, epoch, tc.start)
			var got []api.Health
			for _, r := range tc.results {
				h.observe(r)
				got = append(got, h.health)
			}
			if !slices.Equal(got, tc.want) {
				t.Fatalf("got %v, want %v", got, tc.want)
			}
		})
	}
}

// scriptedCheck answers health checks from a list of exit codes, the last
// repeated, and counts the checks.
type scriptedCheck struct {
	mu    sync.Mutex
	codes []int
	n     int
	args  [][]string
}

func (c *scriptedCheck) check(_ string, args []string) (int, string, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	code := c.codes[min(c.n, len(c.codes)-1)]
	c.n++
	c.args = append(c.args, args)
	if code != 0 {
		return code, "  boom\n", nil
	}
	return 0, "ok", nil
}

func (c *scriptedCheck) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n
}

// tick advances the fake clock by d and waits for the check it triggers.
func tick(t *testing.T, h *workerHarness, c *scriptedCheck, d time.Duration) {
	t.Helper()
	n := c.count()
	waitFor(t, "the probe's ticker", func() bool { return h.clk.Tickers() == 1 })
	h.clk.Advance(d)
	waitFor(t, "a health check", func() bool { return c.count() > n })
}

func TestWorkerHealthCheck(t *testing.T) {
	spec := &api.HealthConfig{Test: []string{"CMD-SHELL", "wget -q localhost"}, Interval: time.Second, Retries: 2}
	t.Run("starting until healthy, then running", func(t *testing.T) {
		h := newWorkerHarness(t)
		c := &scriptedCheck{codes: []int{1, 0}}
		h.fake.SetCheck(c.check, nil)
		tk := newTask("t1", api.TaskRunning, api.TaskAssigned)
		tk.Spec.Healthcheck = spec
		h.w.Reconcile(h.ctx, []*api.Task{tk})
		h.waitState(t, "t1", api.TaskStarting)
		if last := h.rec.last("t1").Status; last.Health != api.HealthStarting {
			t.Fatalf("starting report: got health %q, want starting", last.Health)
		}
		tick(t, h, c, time.Second) // fails: one of two retries
		tick(t, h, c, time.Second) // passes
		h.waitState(t, "t1", api.TaskRunning)
		last := h.rec.last("t1").Status
		if last.Health != api.HealthHealthy || last.HealthOutput != "ok" {
			t.Errorf("running report: got health %q output %q, want healthy, ok", last.Health, last.HealthOutput)
		}
		if want := []string{"/bin/sh", "-c", "wget -q localhost"}; !slices.Equal(c.args[0], want) {
			t.Errorf("check args: got %q, want %q", c.args[0], want)
		}
		if got, want := h.rec.states("t1"), startStates; !slices.Equal(got, want) {
			t.Errorf("reports: got %v, want %v", got, want)
		}
	})
	t.Run("unhealthy fails the task with the output", func(t *testing.T) {
		h := newWorkerHarness(t)
		c := &scriptedCheck{codes: []int{0, 1}}
		h.fake.SetCheck(c.check, nil)
		tk := newTask("t1", api.TaskRunning, api.TaskAssigned)
		tk.Spec.Healthcheck = spec
		h.w.Reconcile(h.ctx, []*api.Task{tk})
		tick(t, h, c, time.Second)
		h.waitState(t, "t1", api.TaskRunning)
		tick(t, h, c, time.Second)
		tick(t, h, c, time.Second)
		h.waitState(t, "t1", api.TaskFailed)
		last := h.rec.last("t1").Status
		if last.Err != "unhealthy: boom" || last.Health != api.HealthUnhealthy {
			t.Errorf("failed report: got err %q health %q, want %q unhealthy", last.Err, last.Health, "unhealthy: boom")
		}
		waitFor(t, "the stop", func() bool { return len(h.stops("t1")) > 0 })
		if len(h.stops("t1")) != 1 {
			t.Errorf("stops: got %v, want one", h.stops("t1"))
		}
	})
	t.Run("image check, NONE turns it off", func(t *testing.T) {
		h := newWorkerHarness(t)
		h.fake.SetCheck(nil, &api.HealthConfig{Test: []string{"CMD", "true"}})
		tk := newTask("t1", api.TaskRunning, api.TaskAssigned)
		h.w.Reconcile(h.ctx, []*api.Task{tk})
		h.waitState(t, "t1", api.TaskStarting)
		if got := h.rec.last("t1").Status.Message; !strings.Contains(got, "health check") {
			t.Errorf("image check: starting message %q, want it waiting for the health check", got)
		}
		off := newTask("t2", api.TaskRunning, api.TaskAssigned)
		off.Spec.Healthcheck = &api.HealthConfig{Test: []string{"NONE"}}
		h.w.Reconcile(h.ctx, []*api.Task{tk, off})
		h.waitState(t, "t2", api.TaskRunning)
		if got := h.rec.last("t2").Status.Health; got != "" {
			t.Errorf("NONE: got health %q, want none", got)
		}
	})
}
