package agent

import (
	"context"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/shoal-dev/shoal/agent/exec"
	"github.com/shoal-dev/shoal/api"
)

// statsTimeout bounds the reads of task stats in one scrape; tasks whose
// stats do not come in time are left out of that scrape.
const statsTimeout = 2 * time.Second

// statsParallel is how many tasks' stats one scrape reads at once.
const statsParallel = 8

// metrics are the agent's own instruments, registered by New.
type metrics struct {
	startLatency prometheus.Histogram
	pullDuration prometheus.Histogram
	pullFailures prometheus.Counter
}

func newMetrics() *metrics {
	return &metrics{
		startLatency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "shoal_task_start_latency_seconds",
			Help:    "Time from a task's assignment by the scheduler to this node reporting it running (image pull included).",
			Buckets: []float64{.05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120, 300},
		}),
		pullDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "shoal_image_pull_duration_seconds",
			Help:    "Time of the image pulls this node made to start tasks (pull and unpack) that succeeded.",
			Buckets: []float64{.1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600},
		}),
		pullFailures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "shoal_image_pull_failures_total",
			Help: "Image pulls this node made to start tasks that failed.",
		}),
	}
}

// ObservePull records one image pull; it is the containerd executor's
// OnPull hook.
func (a *Agent) ObservePull(took time.Duration, err error) {
	if err != nil {
		a.metrics.pullFailures.Inc()
		return
	}
	a.metrics.pullDuration.Observe(took.Seconds())
}

// taskStates are the states shoal_agent_tasks always reports, so that a
// state with no task reads 0 rather than missing.
var taskStates = []api.TaskState{
	api.TaskNew, api.TaskPending, api.TaskAssigned, api.TaskAccepted, api.TaskPreparing, api.TaskStarting,
	api.TaskRunning, api.TaskComplete, api.TaskShutdown, api.TaskFailed, api.TaskRejected, api.TaskOrphaned,
}

// tasksCollector reports the worker's tasks at scrape time: how many are
// in each state, and the CPU and memory of those running, read from the
// engine.
type tasksCollector struct {
	worker  func() *Worker // nil until the engine is connected
	timeout time.Duration
	states  *prometheus.Desc
	cpu     *prometheus.Desc
	memory  *prometheus.Desc
}

func newTasksCollector(worker func() *Worker) *tasksCollector {
	return &tasksCollector{
		worker:  worker,
		timeout: statsTimeout,
		states: prometheus.NewDesc("shoal_agent_tasks",
			"Tasks this node's agent runs, by the state it last reported (assigned before it reported any).", []string{"state"}, nil),
		cpu: prometheus.NewDesc("shoal_task_cpu_seconds_total",
			"CPU time used by the running tasks of a service slot on this node (global tasks have slot 0), as their cgroups count it.",
			[]string{"service", "slot"}, nil),
		memory: prometheus.NewDesc("shoal_task_memory_bytes",
			"Memory used now by the running tasks of a service slot on this node, less reclaimable page cache.",
			[]string{"service", "slot"}, nil),
	}
}

func (c *tasksCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.states
	ch <- c.cpu
	ch <- c.memory
}

func (c *tasksCollector) Collect(ch chan<- prometheus.Metric) {
	counts := make(map[api.TaskState]int, len(taskStates))
	for _, s := range taskStates {
		counts[s] = 0
	}
	var w *Worker
	if c.worker != nil {
		w = c.worker()
	}
	var running []taskInfo
	if w != nil {
		for _, t := range w.tasks() {
			counts[t.state]++
			if t.state == api.TaskRunning {
				running = append(running, t)
			}
		}
	}
	for s, n := range counts {
		ch <- prometheus.MustNewConstMetric(c.states, prometheus.GaugeValue, float64(n), string(s))
	}
	if len(running) == 0 {
		return
	}
	// Two tasks of one slot run side by side for a moment while one
	// replaces the other: their use is added up, so the series stays one.
	type slotKey struct {
		service string
		slot    uint64
	}
	sums := map[slotKey]exec.Stats{}
	for i, st := range c.readStats(w, running) {
		if st == nil {
			continue
		}
		k := slotKey{running[i].service, running[i].slot}
		sum := sums[k]
		sum.CPUSeconds += st.CPUSeconds
		sum.MemoryBytes += st.MemoryBytes
		sums[k] = sum
	}
	for k, st := range sums {
		slot := strconv.FormatUint(k.slot, 10)
		ch <- prometheus.MustNewConstMetric(c.cpu, prometheus.CounterValue, st.CPUSeconds, k.service, slot)
		ch <- prometheus.MustNewConstMetric(c.memory, prometheus.GaugeValue, float64(st.MemoryBytes), k.service, slot)
	}
}

// readStats reads the stats of tasks, a few at a time, within c.timeout;
// an entry is nil where the engine did not answer in time or failed (the
// task may have just exited).
func (c *tasksCollector) readStats(w *Worker, tasks []taskInfo) []*exec.Stats {
	ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
	defer cancel()
	type result struct {
		i  int
		st *exec.Stats // nil on failure
	}
	// Buffered for all, so a call that ignores ctx and answers late
	// blocks nobody.
	results := make(chan result, len(tasks))
	sem := make(chan struct{}, statsParallel)
	for i, t := range tasks {
		go func() {
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				return
			}
			defer func() { <-sem }()
			st, err := w.exec.Stats(ctx, t.id)
			if err != nil {
				if ctx.Err() == nil {
					w.log.Debug("read task stats", "task", t.id, "err", err)
				}
				results <- result{i, nil}
				return
			}
			results <- result{i, &st}
		}()
	}
	out := make([]*exec.Stats, len(tasks))
	for range tasks {
		select {
		case r := <-results:
			out[r.i] = r.st
		case <-ctx.Done():
			w.log.Debug("task stats: the engine did not answer in time", "timeout", c.timeout)
			return out
		}
	}
	return out
}
