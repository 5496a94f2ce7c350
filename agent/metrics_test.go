package agent

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/shoal-dev/shoal/agent/exec"
	"github.com/shoal-dev/shoal/agent/exec/exectest"
	"github.com/shoal-dev/shoal/api"
	"github.com/shoal-dev/shoal/clock"
)

// gathered reads every sample of reg as "name{k=v,...}" -> value;
// histograms give name_count and name_sum.
func gathered(t *testing.T, reg prometheus.Gatherer) map[string]float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatalf("Gather: %v", err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			var labels []string
			for _, l := range m.GetLabel() {
				labels = append(labels, l.GetName()+"="+l.GetValue())
			}
			key := func(name string) string {
				if len(labels) == 0 {
					return name
				}
				return name + "{" + strings.Join(labels, ",") + "}"
			}
			switch mf.GetType() {
			case dto.MetricType_COUNTER:
				out[key(mf.GetName())] = m.GetCounter().GetValue()
			case dto.MetricType_GAUGE:
				out[key(mf.GetName())] = m.GetGauge().GetValue()
			case dto.MetricType_HISTOGRAM:
				out[key(mf.GetName()+"_count")] = float64(m.GetHistogram().GetSampleCount())
				out[key(mf.GetName()+"_sum")] = m.GetHistogram().GetSampleSum()
			}
		}
	}
	return out
}

// checkSamples compares the samples of got that want names.
func checkSamples(t *testing.T, got, want map[string]float64) {
	t.Helper()
	for _, k := range slices.Sorted(maps.Keys(want)) {
		if v, ok := got[k]; !ok || v != want[k] {
			t.Errorf("%s: got %v (present %v), want %v", k, v, ok, want[k])
		}
	}
}

func TestWorkerObservesStartLatency(t *testing.T) {
	tests := []struct {
		name      string
		status    api.TaskStatus
		wantCount uint64
		wantSum   float64
	}{
		{"assigned 3s ago", api.TaskStatus{State: api.TaskAssigned, Timestamp: epoch.Add(-3 * time.Second)}, 1, 3},
		{"assigned now", api.TaskStatus{State: api.TaskAssigned, Timestamp: epoch}, 1, 0},
		{"leader clock ahead", api.TaskStatus{State: api.TaskAssigned, Timestamp: epoch.Add(time.Second)}, 1, 0},
		{"no assignment time", api.TaskStatus{State: api.TaskAssigned}, 0, 0},
		{"seen after assigned", api.TaskStatus{State: api.TaskPreparing, Timestamp: epoch.Add(-time.Minute)}, 0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newWorkerHarness(t)
			hist := prometheus.NewHistogram(prometheus.HistogramOpts{Name: "h", Buckets: []float64{1, 10}})
			h.w.startLatency = hist
			tk := newTask("t1", api.TaskRunning, tt.status.State)
			tk.Status = tt.status
			h.w.Reconcile(h.ctx, []*api.Task{tk})
			h.waitState(t, "t1", api.TaskRunning)

			var m dto.Metric
			if err := hist.Write(&m); err != nil {
				t.Fatalf("read histogram: %v", err)
			}
			if got := m.GetHistogram().GetSampleCount(); got != tt.wantCount {
				t.Errorf("observations: got %d, want %d", got, tt.wantCount)
			}
			if got := m.GetHistogram().GetSampleSum(); got != tt.wantSum {
				t.Errorf("sum: got %v, want %v", got, tt.wantSum)
			}
		})
	}
}

// slowStats is an executor whose Stats for one task answers only when its
// context ends, as an engine that hangs.
type slowStats struct {
	*exectest.Fake
	slow string
}

func (s slowStats) Stats(ctx context.Context, id string) (exec.Stats, error) {
	if id == s.slow {
		<-ctx.Done()
		return exec.Stats{}, ctx.Err()
	}
	return s.Fake.Stats(ctx, id)
}

func TestTasksCollector(t *testing.T) {
	h := newWorkerHarness(t)
	// t4 hangs in prepare until the test ends.
	release := make(chan struct{})
	h.fake.Fail = func(op, id string) error {
		if op == "prepare" && id == "t4" {
			<-release
			return errors.New("released")
		}
		return nil
	}
	t.Cleanup(func() { close(release) }) // runs before the harness's cleanup
	h.w.exec = slowStats{Fake: h.fake, slow: "t6"}

	task := func(id, service string, slot uint64) *api.Task {
		tk := newTask(id, api.TaskRunning, api.TaskAssigned)
		tk.ServiceName, tk.Slot = service, slot
		return tk
	}
	tasks := []*api.Task{
		task("t1", "web", 1),
		task("t2", "web", 2),
		task("t3", "agent", 0), // global
		task("t4", "db", 1),    // stuck preparing
		task("t5", "web", 1),   // replaces t1: the same slot
		task("t6", "cache", 1), // its stats never come
	}
	h.w.Reconcile(h.ctx, tasks)
	for _, id := range []string{"t1", "t2", "t3", "t5", "t6"} {
		h.waitState(t, id, api.TaskRunning)
	}
	h.waitState(t, "t4", api.TaskPreparing)
	for id, st := range map[string]exec.Stats{
		"t1": {CPUSeconds: 1.5, MemoryBytes: 100},
		"t2": {CPUSeconds: 3, MemoryBytes: 200},
		"t3": {CPUSeconds: 0.25, MemoryBytes: 300},
		"t5": {CPUSeconds: 0.5, MemoryBytes: 50},
	} {
		if err := h.fake.SetStats(id, st); err != nil {
			t.Fatal(err)
		}
	}

	c := newTasksCollector(func() *Worker { return h.w })
	c.timeout = 100 * time.Millisecond
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(c)
	got := gathered(t, reg)

	want := map[string]float64{
		"shoal_task_cpu_seconds_total{service=web,slot=1}":   2,
		"shoal_task_memory_bytes{service=web,slot=1}":        150,
		"shoal_task_cpu_seconds_total{service=web,slot=2}":   3,
		"shoal_task_memory_bytes{service=web,slot=2}":        200,
		"shoal_task_cpu_seconds_total{service=agent,slot=0}": 0.25,
		"shoal_task_memory_bytes{service=agent,slot=0}":      300,
	}
	for _, s := range taskStates {
		want[fmt.Sprintf("shoal_agent_tasks{state=%s}", s)] = 0
	}
	want["shoal_agent_tasks{state=running}"] = 5
	want["shoal_agent_tasks{state=preparing}"] = 1
	checkSamples(t, got, want)
	for k := range got {
		if _, ok := want[k]; !ok {
			t.Errorf("unexpected sample %s = %v", k, got[k])
		}
	}
}

func TestTasksCollectorWithoutEngine(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(newTasksCollector(func() *Worker { return nil }))
	got := gathered(t, reg)
	if len(got) != len(taskStates) {
		t.Errorf("samples: got %v, want one zero per task state", got)
	}
	for k, v := range got {
		if !strings.HasPrefix(k, "shoal_agent_tasks{") || v != 0 {
			t.Errorf("%s: got %v, want a zero shoal_agent_tasks", k, v)
		}
	}
}

func TestAgentRegistersMetrics(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	a := New(Config{Clock: clock.NewFake(epoch), Logger: discardLogger(), Registry: reg})
	a.ObservePull(2*time.Second, nil)
	a.ObservePull(500*time.Millisecond, nil)
	a.ObservePull(time.Second, errors.New("not found"))
	checkSamples(t, gathered(t, reg), map[string]float64{
		"shoal_image_pull_duration_seconds_count": 2,
		"shoal_image_pull_duration_seconds_sum":   2.5,
		"shoal_image_pull_failures_total":         1,
		"shoal_task_start_latency_seconds_count":  0,
		"shoal_agent_tasks{state=running}":        0,
		"shoal_agent_heartbeat_failures_total":    0,
	})
}
