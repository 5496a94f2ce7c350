package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"reflect"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/shoal-dev/shoal/agent/exec"
	"github.com/shoal-dev/shoal/api"
	"github.com/shoal-dev/shoal/clock"
)

// Config wires an Agent.
type Config struct {
	Hostname  string
	Addr      string
	Endpoints api.Endpoints
	// Engine probes the container engine.
	Engine EngineProber
	// Dial returns a client for a manager's API address (mutual TLS).
	Dial func(apiAddr string) (*api.Client, error)
	// Managers returns the managers' endpoints known now.
	Managers func() []api.Endpoints
	// NewExecutor connects to the engine that runs tasks; the agent retries
	// until it succeeds. nil runs no tasks.
	NewExecutor func() (exec.Executor, error)
	// Limits bound the container starts and image pulls done at once.
	Limits Limits
	// Network wires the overlay networks of tasks; nil leaves tasks with
	// loopback only.
	Network Networker
	// OnResponse gets every heartbeat answer, in order.
	OnResponse func(api.HeartbeatResponse)
	Clock      clock.Clock
	Logger     *slog.Logger
	Registry   prometheus.Registerer
}

// Agent keeps the node's session with the managers.
type Agent struct {
	cfg Config
	log *slog.Logger

	mu      sync.Mutex
	engine  api.Engine
	current string // API address of the manager that answered last

	// described is the last full heartbeat a manager took; while the node
	// still matches it, beats are empty. Only Run's loop uses it.
	described *api.Heartbeat

	status *statusQueue
	files  *fileStore
	exec   exec.Executor // set once the engine is connected
	worker *Worker       // set once the engine is connected

	failures prometheus.Counter
	metrics  *metrics
}

var errNoManager = errors.New("agent: no manager known")

// New returns an agent; Run starts it.
func New(cfg Config) *Agent {
	a := &Agent{cfg: cfg, log: cfg.Logger.With("component", "agent")}
	a.failures = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "shoal_agent_heartbeat_failures_total", Help: "Heartbeats that no manager answered.",
	})
	a.metrics = newMetrics()
	if cfg.Registry != nil {
		cfg.Registry.MustRegister(a.failures, a.metrics.startLatency, a.metrics.pullDuration, a.metrics.pullFailures,
			newTasksCollector(a.currentWorker))
	}
	a.engine = api.Engine{Name: "containerd", Error: "not probed yet"}
	a.status = newStatusQueue()
	a.files = newFileStore()
	return a
}

// Engine is what the last probe found.
func (a *Agent) Engine() api.Engine {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.engine
}

// Executor is the connected engine, nil until the agent reaches it.
func (a *Agent) Executor() exec.Executor {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.exec
}

// currentWorker is the worker, nil until the engine is connected.
func (a *Agent) currentWorker() *Worker {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.worker
}

// RemoveAll stops and removes every task container on this node, for a
// node that leaves the cluster. Each gets the default stop grace period.
// Then the networking goes too: a node out of the cluster publishes no
// port and keeps no overlay.
func (a *Agent) RemoveAll(ctx context.Context) error {
	if a.cfg.Network != nil {
		defer a.cfg.Network.Update(nil, api.NetworkState{})
	}
	e := a.Executor()
	if e == nil {
		return nil
	}
	list, err := e.List(ctx)
	if err != nil {
		return fmt.Errorf("list task containers: %w", err)
	}
	var wg sync.WaitGroup
	errs := make([]error, len(list))
	for i, c := range list {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := e.Stop(ctx, c.TaskID, defaultStopGrace); err != nil {
				errs[i] = fmt.Errorf("stop task %s: %w", c.TaskID, err)
				return
			}
			if err := e.Remove(ctx, c.TaskID); err != nil {
				errs[i] = fmt.Errorf("remove task %s: %w", c.TaskID, err)
			}
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// Description is what the node reports about itself.
func (a *Agent) Description() api.NodeDescription {
	return api.NodeDescription{
		Hostname:    a.cfg.Hostname,
		OS:          runtime.GOOS,
		Arch:        runtime.GOARCH,
		CPUs:        runtime.NumCPU(),
		MemoryBytes: memoryBytes(),
		Engine:      a.Engine(),
	}
}

// ProbeEngine asks the engine what it is and remembers the answer.
func (a *Agent) ProbeEngine(ctx context.Context) {
	e := a.cfg.Engine.Probe(ctx)
	a.mu.Lock()
	changed := e != a.engine
	a.engine = e
	a.mu.Unlock()
	if changed {
		a.log.Info("container engine", "available", e.Available, "version", e.Version, "err", e.Error)
	}
}

// Run beats until ctx ends. The first beat goes out at once; the engine is
// probed beside it so a slow engine never delays a heartbeat.
//
// Beats keep a fixed schedule: the next is due a period (±10 %, so that
// nodes started together do not beat together) after the previous one was
// due, not after it ended, and each call gives up after 3/4 of a period.
// A slow or lossy link therefore still beats once a period, where waiting
// a period after a 2 s call spaced beats 3 s apart and the leader, missing
// three, marked the node down.
func (a *Agent) Run(ctx context.Context) {
	go a.probeLoop(ctx)
	if a.cfg.NewExecutor != nil {
		go a.runStatus(ctx)
		go a.runAssignments(ctx)
	}
	period := time.Second
	due := a.cfg.Clock.Now()
	for {
		if resp, ok := a.beat(ctx, period*3/4); ok {
			if resp.Period > 0 {
				period = resp.Period
			}
			a.cfg.OnResponse(resp)
		}
		due = nextBeat(due, a.cfg.Clock.Now(), period, rand.Float64())
		wait := due.Sub(a.cfg.Clock.Now())
		if wait <= 0 {
			continue
		}
		tick, stop := a.cfg.Clock.NewTicker(wait)
		select {
		case <-ctx.Done():
			stop()
			return
		case <-tick:
			stop()
		}
	}
}

// nextBeat is when the beat after the one due at prev is due: a period
// later, jittered by ±10 % (r in [0,1)), or now if that has passed.
func nextBeat(prev, now time.Time, period time.Duration, r float64) time.Time {
	next := prev.Add(time.Duration(float64(period) * (0.9 + 0.2*r)))
	if next.Before(now) {
		return now
	}
	return next
}

func (a *Agent) probeLoop(ctx context.Context) {
	tick, stop := a.cfg.Clock.NewTicker(15 * time.Second)
	defer stop()
	for {
		a.ProbeEngine(ctx)
		select {
		case <-ctx.Done():
			return
		case <-tick:
		}
	}
}

// beat sends one heartbeat, to the manager that answered last first,
// giving each manager timeout to answer.
//
// The beat is empty unless the node's description, endpoints or address
// changed since the last full beat a manager took (or a manager asked for
// them): the leader then has nothing to decode or compare.
func (a *Agent) beat(ctx context.Context, timeout time.Duration) (api.HeartbeatResponse, bool) {
	hb := &api.Heartbeat{Description: a.Description(), Endpoints: a.cfg.Endpoints, Addr: a.cfg.Addr}
	send := hb
	if a.described != nil && reflect.DeepEqual(*a.described, *hb) {
		send = nil
	}
	var resp api.HeartbeatResponse
	err := a.withManager(ctx, func(c *api.Client) error {
		cctx, cancel := context.WithTimeout(ctx, timeout)
		defer cancel()
		var err error
		resp, err = c.Heartbeat(cctx, send)
		return err
	})
	if err != nil {
		if ctx.Err() == nil {
			a.failures.Inc()
			a.log.Warn("no manager answered the heartbeat", "err", err)
		}
		return resp, false
	}
	switch {
	case resp.Describe:
		a.described = nil
	case send != nil:
		a.described = hb
	}
	return resp, true
}

// memoryBytes reads MemTotal; 0 if unknown.
func memoryBytes() int64 {
	data, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) == 3 && f[0] == "MemTotal:" && f[2] == "kB" {
			kb, _ := strconv.ParseInt(f[1], 10, 64)
			return kb * 1024
		}
	}
	return 0
}
