package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/shoal-dev/shoal/api"
)

// updateTimeout bounds a whole `service update --detach=false`.
const updateTimeout = 3 * time.Minute

// follow runs a CLI command that follows an update on h, with room for it.
func follow(h *Host, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), updateTimeout)
	defer cancel()
	return h.ShoalCtx(ctx, args...)
}

// inspectService is `service inspect SVC` through h.
func inspectService(t testing.TB, h *Host, svc string) api.ServiceView {
	t.Helper()
	out, err := h.Shoal("service", "inspect", svc)
	if err != nil {
		t.Fatal(err)
	}
	var views []api.ServiceView
	if err := json.Unmarshal([]byte(out), &views); err != nil || len(views) != 1 {
		t.Fatalf("service inspect %s: %v: %q", svc, err, out)
	}
	return views[0]
}

// onSpec returns the tasks that should run and run a spec with env kv
// (kv "" means none starting V=).
func onSpec(tasks []*api.Task, kv string) []*api.Task {
	var out []*api.Task
	for _, t := range tasks {
		if t.DesiredState != api.TaskRunning {
			continue
		}
		has := slices.ContainsFunc(t.Spec.Env, func(e string) bool { return strings.HasPrefix(e, "V=") })
		if (kv == "" && !has) || (kv != "" && slices.Contains(t.Spec.Env, kv)) {
			out = append(out, t)
		}
	}
	return out
}

// allRunningOn checks that n tasks run, all of the spec with env kv.
func allRunningOn(n int, kv string) func([]*api.Task) error {
	return func(tasks []*api.Task) error {
		live := Live(tasks)
		on := 0
		for _, t := range onSpec(live, kv) {
			if t.Status.State == api.TaskRunning {
				on++
			}
		}
		if len(live) != n || on != n {
			return fmt.Errorf("want %d running with %q, got %d live, %d of them on it", n, kv, len(live), on)
		}
		return nil
	}
}

// TestRollingUpdate runs service update and rollback on a cluster of three
// managers and a worker, with real containers: a rolling update keeping to
// its parallelism and delay, --force, service rollback, a bad image rolled
// back by itself, and the leader killed mid-update.
func TestRollingUpdate(t *testing.T) {
	requireEngine(t)
	shoalBin(t)
	c := NewEngineCluster(t, 3, 1)
	s := &services{c: c, m: c.Managers[0]}
	s.ready(t)
	const n, par, delay = 4, 2, 3 * time.Second
	// The tasks run on the worker only, so killing a manager kills none.
	s.run(t, "service", "create", "--name", "web", "--replicas", fmt.Sprint(n), "--constraint", "node.role==worker",
		"--update-parallelism", fmt.Sprint(par), "--update-delay", delay.String(), "--update-monitor", "2s", "--detach", c.Image)
	s.wait(t, "web", allRunningOn(n, ""))

	t.Run("parallelism_and_delay", func(t *testing.T) {
		defer c.Net.Bind(t)()
		start := time.Now()
		out, err := follow(s.m, "service", "update", "--env-add", "V=2", "--detach=false", "web")
		took := time.Since(start)
		if err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
		if !strings.HasSuffix(out, "verify: Service converged\n") || !strings.Contains(out, "web.1: running") {
			t.Errorf("update output: want per-task progress ending converged, got\n%s", out)
		}
		tasks, _ := s.wait(t, "web", allRunningOn(n, "V=2"))
		fresh := onSpec(tasks, "V=2")
		slices.SortFunc(fresh, func(a, b *api.Task) int { return a.Meta.CreatedAt.Compare(b.Meta.CreatedAt) })
		// Batch 1 (two tasks) at once; each later task only once a worker
		// is free: a new task ready for the delay.
		for i := par; i < len(fresh); i++ {
			var ready []time.Time
			for _, x := range fresh[:i] {
				ready = append(ready, x.Status.Timestamp)
			}
			slices.SortFunc(ready, time.Time.Compare)
			free := ready[i-par].Add(delay) // the (i-par+1)th worker to come free
			if created := fresh[i].Meta.CreatedAt; created.Before(free.Add(-100 * time.Millisecond)) {
				t.Errorf("task %d (%s) created at %s, before a worker was free at %s (parallelism %d, delay %s)",
					i+1, fresh[i].ID, created.Format("15:04:05.000"), free.Format("15:04:05.000"), par, delay)
			}
		}
		if gap := fresh[1].Meta.CreatedAt.Sub(fresh[0].Meta.CreatedAt); gap > time.Second {
			t.Errorf("first batch: tasks created %s apart, want together", gap)
		}
		v := inspectService(t, s.m, "web")
		if st := v.UpdateStatus; st == nil || st.State != api.UpdateCompleted || v.PreviousSpec == nil {
			t.Errorf("after the update: status %+v, previous spec %v", v.UpdateStatus, v.PreviousSpec != nil)
		}
		var lines []string
		for _, x := range fresh {
			lines = append(lines, fmt.Sprintf("slot %d created +%.2fs running +%.2fs", x.Slot,
				x.Meta.CreatedAt.Sub(start).Seconds(), x.Status.Timestamp.Sub(start).Seconds()))
		}
		t.Logf("new tasks: %s", strings.Join(lines, "; "))
		report(t, "rolling update of %d replicas, parallelism %d, delay %s, monitor 2s: %.2fs (CLI, completed state included)", n, par, delay, took.Seconds())
	})

	t.Run("force", func(t *testing.T) {
		defer c.Net.Bind(t)()
		before := Live(mustTasks(t, s.m, "web"))
		start := time.Now()
		if out, err := follow(s.m, "service", "update", "--force", "--update-parallelism", "0", "--detach=false", "web"); err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
		tasks, _ := s.wait(t, "web", allRunningOn(n, "V=2"))
		for _, x := range Live(tasks) {
			if slices.ContainsFunc(before, func(b *api.Task) bool { return b.ID == x.ID }) {
				t.Errorf("task %s survived --force", x.ID)
			}
			if x.Spec.ForceUpdate != 1 {
				t.Errorf("task %s: ForceUpdate %d, want 1", x.ID, x.Spec.ForceUpdate)
			}
		}
		report(t, "update --force of %d replicas, parallelism 0: %.2fs", n, time.Since(start).Seconds())
	})

	t.Run("rollback", func(t *testing.T) {
		defer c.Net.Bind(t)()
		// The previous spec is the one before --force: V=2, ForceUpdate 0.
		if out, err := follow(s.m, "service", "rollback", "--detach=false", "web"); err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
		tasks, _ := s.wait(t, "web", allRunningOn(n, "V=2"))
		for _, x := range Live(tasks) {
			if x.Spec.ForceUpdate != 0 {
				t.Errorf("after rollback: task %s ForceUpdate %d, want 0", x.ID, x.Spec.ForceUpdate)
			}
		}
		v := inspectService(t, s.m, "web")
		if st := v.UpdateStatus; st == nil || st.State != api.UpdateRollbackCompleted || !strings.Contains(st.Message, "manually requested rollback") {
			t.Errorf("after rollback: status %+v", v.UpdateStatus)
		}
		if v.PreviousSpec == nil || v.PreviousSpec.Task.ForceUpdate != 1 {
			t.Errorf("after rollback: previous spec should be the forced one")
		}
		if out := s.run(t, "service", "ls"); !strings.Contains(out, "rollback_completed") {
			t.Errorf("service ls: want the update state, got\n%s", out)
		}
	})

	t.Run("bad_image_rolls_back", func(t *testing.T) {
		defer c.Net.Bind(t)()
		const monitor = 5 * time.Second
		bad := c.RegistryAddr + "/shoal/nonexistent:1"
		start := time.Now()
		out, err := follow(s.m, "service", "update", "--image", bad, "--update-parallelism", "1",
			"--update-failure-action", "rollback", "--update-monitor", monitor.String(), "--detach=false", "web")
		if err == nil || !strings.Contains(err.Error(), "rolled back") {
			t.Fatalf("update to a missing image: want a non-zero exit saying rolled back, got %v\n%s", err, out)
		}
		took := time.Since(start)
		tasks, _ := s.wait(t, "web", allRunningOn(n, "V=2"))
		for _, x := range Live(tasks) {
			if x.Spec.Image != c.Image {
				t.Errorf("after rollback: task %s runs %s", x.ID, x.Spec.Image)
			}
		}
		v := inspectService(t, s.m, "web")
		st := v.UpdateStatus
		if st == nil || st.State != api.UpdateRollbackCompleted || !strings.Contains(st.Message, "update rolled back due to failure") {
			t.Fatalf("status: got %+v, want rollback_completed saying why", st)
		}
		// Detection: the failed task's last status, as the manager stored it;
		// rollback start: the status the orchestrator wrote.
		var failedAt time.Time
		for _, x := range tasks {
			if x.Spec.Image == bad && (x.Status.State == api.TaskRejected || x.Status.State == api.TaskFailed) {
				if failedAt.IsZero() || x.Status.Timestamp.Before(failedAt) {
					failedAt = x.Status.Timestamp
				}
			}
		}
		if failedAt.IsZero() {
			t.Fatalf("no failed task of %s: %s", bad, c.TaskSummary(tasks))
		}
		detect := st.StartedAt.Sub(failedAt)
		if detect > monitor+2*time.Second {
			t.Errorf("rollback started %s after the failure, want within monitor + 2s", detect)
		}
		t.Logf("status: %s", st.Message)
		report(t, "bad image: failure -> rollback start %.3fs (goal <= %s + 2s); update issued -> rolled back and CLI done %.2fs", detect.Seconds(), monitor, took.Seconds())
	})

	t.Run("leader_killed_mid_update", func(t *testing.T) {
		defer c.Net.Bind(t)()
		leader, err := c.Leader(c.Managers...)
		if err != nil {
			t.Fatal(err)
		}
		var other *Host
		for _, m := range c.Managers {
			if m != leader {
				other = m
				break
			}
		}
		if _, err := other.Shoal("service", "update", "--env-add", "V=3", "--update-parallelism", "1",
			"--update-delay", "2s", "--update-failure-action", "pause", "--detach", "web"); err != nil {
			t.Fatal(err)
		}
		// Kill the leader once the first new task runs.
		eventually(t, convergeTimeout, func() error {
			tasks, err := Tasks(other, "web")
			if err != nil {
				return err
			}
			for _, x := range onSpec(tasks, "V=3") {
				if x.Status.State == api.TaskRunning {
					return nil
				}
			}
			return fmt.Errorf("no task with V=3 running yet")
		})
		killed := time.Now()
		leader.Daemon().Kill()
		sv := &services{c: c, m: other}
		sv.wait(t, "web", allRunningOn(n, "V=3"))
		eventually(t, convergeTimeout, func() error {
			out, err := other.Shoal("service", "inspect", "web")
			if err != nil {
				return err
			}
			var views []api.ServiceView
			if err := json.Unmarshal([]byte(out), &views); err != nil || len(views) != 1 {
				return fmt.Errorf("inspect: %v", err)
			}
			if st := views[0].UpdateStatus; st == nil || st.State != api.UpdateCompleted {
				return fmt.Errorf("update status %+v", st)
			}
			return nil
		})
		report(t, "leader killed after the first of %d tasks updated: every task on the new spec and status completed %.2fs after the kill", n, time.Since(killed).Seconds())
	})
}

func mustTasks(t testing.TB, h *Host, svc string) []*api.Task {
	t.Helper()
	tasks, err := Tasks(h, svc)
	if err != nil {
		t.Fatal(err)
	}
	return tasks
}

// TestRollingUpdateHollow measures a rolling update at a size real
// containers cannot afford here: 100 replicas on 20 hollow nodes, updated
// with parallelism 10 and no delay. Goal (issue 10): every task on the new
// spec within 10 x (time for one batch to run) + 2 s.
func TestRollingUpdateHollow(t *testing.T) {
	const nodes, replicas, par = 20, 100, 10
	n := NewNet(t)
	c := newManagers(t, n, 1, scaleManagerFlags(t), hollowDownGrace(t))
	m1 := c.Managers[0]
	n.AddHost("sim").StartSim(c.Token(t, m1, "worker"), m1.IP, nodes)
	waitNodesReady(t, m1, 1, nodes, 2*time.Minute)
	cl := m1.APIClient()
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	_, err := cl.CreateService(ctx, api.ServiceSpec{Name: "web", Mode: api.ModeReplicated, Replicas: replicas,
		Task:   api.TaskSpec{Image: "hollow/none:1"},
		Update: &api.UpdateConfig{Parallelism: par, Monitor: 2 * time.Second, FailureAction: api.ActionPause, Order: api.OrderStopFirst}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := waitRunning([]*Host{m1}, "web", replicas, nil, time.Now(), pollInterval, 2*time.Minute); err != nil {
		t.Fatal(err)
	}

	start := time.Now()
	if _, err := m1.Shoal("service", "update", "--env-add", "V=2", "--detach", "web"); err != nil {
		t.Fatal(err)
	}
	var firstBatch, allNew, completed time.Duration
	eventually(t, 3*time.Minute, func() error {
		tasks, err := cl.Tasks(ctx, api.TaskFilter{Service: "web"})
		if err != nil {
			return err
		}
		running := 0
		for _, x := range onSpec(tasks, "V=2") {
			if x.Status.State == api.TaskRunning {
				running++
			}
		}
		if firstBatch == 0 && running >= par {
			firstBatch = time.Since(start)
		}
		if allNew == 0 && running == replicas {
			allNew = time.Since(start)
		}
		v, err := cl.Service(ctx, "web")
		if err != nil {
			return err
		}
		if st := v.UpdateStatus; st != nil && st.State == api.UpdateCompleted {
			completed = time.Since(start)
			return nil
		}
		return fmt.Errorf("%d of %d on the new spec running, status %+v", running, replicas, v.UpdateStatus)
	})
	goal := 10*firstBatch + 2*time.Second
	if allNew > goal {
		t.Errorf("all %d on the new spec after %s, want within 10 x %s + 2s = %s", replicas, allNew, firstBatch, goal)
	}
	report(t, "hollow: update of %d replicas, parallelism %d, no delay: first batch running %.2fs, all %.2fs (goal <= %.2fs), completed (monitor 2s) %.2fs",
		replicas, par, firstBatch.Seconds(), allNew.Seconds(), goal.Seconds(), completed.Seconds())
}

// TestZeroDowntimeUpdate: 4 health-checked replicas behind a published port,
// updated start-first (--env-add) while a client requests through the
// routing mesh the whole time: no request fails, and every reply after the
// update carries the new value.
func TestZeroDowntimeUpdate(t *testing.T) {
	requireEngine(t)
	shoalBin(t)
	c := NewEngineCluster(t, 1, 2, WithHostSetup(func(h *Host) { PrivateNetns(h) }))
	m, w2 := c.Managers[0], c.Workers[1]
	cl := m.APIClient()
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	// Each task serves V at /v.txt; its check fetches it.
	_, err := cl.CreateService(ctx, api.ServiceSpec{Name: "web", Mode: api.ModeReplicated, Replicas: 4,
		Task: api.TaskSpec{Image: c.Image, Env: []string{"V=1"},
			Command:     []string{"sh", "-c", "echo $V > /www/v.txt && exec httpd -f -p 80 -h /www"},
			Healthcheck: &api.HealthConfig{Test: []string{"CMD-SHELL", "wget -qO- http://127.0.0.1/v.txt || exit 1"}, Interval: 500 * time.Millisecond, Retries: 3},
		},
		Endpoint: api.EndpointSpec{Ports: []api.PortConfig{{Published: 8080, Target: 80, Protocol: api.ProtocolTCP}}},
		Update:   &api.UpdateConfig{Parallelism: 1, Order: api.OrderStartFirst, Monitor: 2 * time.Second, FailureAction: api.ActionPause},
	})
	if err != nil {
		t.Fatal(err)
	}
	addr := w2.IP + ":8080"
	get := func() (string, error) {
		resp, err := c.Registry.HTTPClient(2 * time.Second).Get("http://" + addr + "/v.txt")
		if err != nil {
			return "", err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil || resp.StatusCode != 200 {
			return "", fmt.Errorf("status %d, %v", resp.StatusCode, err)
		}
		return strings.TrimSpace(string(b)), nil
	}
	eventually(t, convergeTimeout, func() error {
		tasks, err := Tasks(m, "web")
		if err != nil {
			return err
		}
		if err := allRunningOn(4, "V=1")(tasks); err != nil {
			return err
		}
		_, err = get()
		return err
	})

	type result struct {
		at  time.Time
		v   string
		err error
	}
	stop := make(chan struct{})
	done := make(chan []result)
	go func() {
		var rs []result
		for {
			select {
			case <-stop:
				done <- rs
				return
			default:
			}
			v, err := get()
			rs = append(rs, result{time.Now(), v, err})
			time.Sleep(20 * time.Millisecond)
		}
	}()
	start := time.Now()
	out, err := follow(m, "service", "update", "--env-add", "V=2", "--detach=false", "web")
	took := time.Since(start)
	finished := time.Now()
	time.Sleep(2 * time.Second) // requests after the update
	close(stop)
	rs := <-done
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	failed, stale := 0, 0
	var firstErr error
	for _, r := range rs {
		switch {
		case r.err != nil:
			failed++
			if firstErr == nil {
				firstErr = fmt.Errorf("%s: %w", r.at.Sub(start).Round(time.Millisecond), r.err)
			}
		case r.at.After(finished) && r.v != "2":
			stale++
		}
	}
	// Issue 10: 0 failed. The agent keeps an old task running (and its
	// namespace) for a drain period after the cluster stops wanting it, so
	// every node's ingress rules drop it before it stops answering.
	if failed > 0 {
		t.Errorf("%d of %d requests failed during a start-first update (goal 0); first: %v", failed, len(rs), firstErr)
	}
	if stale > 0 {
		t.Errorf("%d replies after the update did not carry V=2", stale)
	}
	report(t, "zero-downtime: start-first update of 4 health-checked replicas: %.2fs, %d requests through the routing mesh, %d failed, %d stale after", took.Seconds(), len(rs), failed, stale)
}
