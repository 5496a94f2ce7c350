package main

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/shoal-dev/shoal/agent/exec/simexec"
	"github.com/shoal-dev/shoal/api"
	"github.com/shoal-dev/shoal/node"
)

// Node states as the control API reports them.
const (
	stateJoining = "joining"
	stateRunning = "running"
	statePaused  = "paused"
	stateKilled  = "killed"
)

type simNode struct {
	hostname string
	hollow   *node.Hollow // nil until joined
	exec     *simexec.Executor
	state    string
}

// sim owns the hollow nodes of the process.
type sim struct {
	o   options
	log *slog.Logger
	ctx context.Context // the nodes' context, set by joinAll

	mu    sync.Mutex
	nodes []*simNode
	rand  *rand.Rand
}

func newSim(o options, log *slog.Logger) *sim {
	s := &sim{o: o, log: log, rand: rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64())), ctx: context.Background()}
	for i := range o.nodes {
		s.nodes = append(s.nodes, &simNode{hostname: fmt.Sprintf("%s-%04d", o.prefix, i+1), state: stateJoining})
	}
	return s
}

// joinAll joins every node, joinParallel at a time, retrying refused or
// failed joins (a manager's join rate limit, a leader election) until ctx
// ends, and starts each node's agent as soon as it has joined.
func (s *sim) joinAll(ctx context.Context) error {
	s.mu.Lock()
	s.ctx = ctx
	s.mu.Unlock()
	work := make(chan *simNode)
	var wg sync.WaitGroup
	for range s.o.joinParallel {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := range work {
				s.join(ctx, n)
			}
		}()
	}
	for _, n := range s.nodes {
		select {
		case work <- n:
		case <-ctx.Done():
		}
	}
	close(work)
	wg.Wait()
	return ctx.Err()
}

func (s *sim) join(ctx context.Context, n *simNode) {
	backoff := 200 * time.Millisecond
	for ctx.Err() == nil {
		e, err := simexec.New(s.o.sim)
		if err != nil {
			s.log.Error("executor", "err", err)
			return
		}
		h, err := node.NewHollow(ctx, node.HollowConfig{
			Hostname: n.hostname, Addr: s.o.addr, JoinAddr: s.o.join, JoinToken: s.o.token,
			Executor: e, Engine: api.Engine{Name: "simexec", Version: "1", Available: true},
			Logger: s.log,
		})
		if err == nil {
			s.mu.Lock()
			n.hollow, n.exec, n.state = h, e, stateRunning
			s.mu.Unlock()
			h.Start(ctx)
			return
		}
		s.log.Info("join; will retry", "hostname", n.hostname, "err", err, "in", backoff)
		select {
		case <-ctx.Done():
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 5*time.Second)
	}
}

func (s *sim) stopAll() {
	var wg sync.WaitGroup
	for _, n := range s.snapshot() {
		if n.hollow != nil {
			wg.Add(1)
			go func() { defer wg.Done(); n.hollow.Stop() }()
		}
	}
	wg.Wait()
}

func (s *sim) snapshot() []simNode {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]simNode, len(s.nodes))
	for i, n := range s.nodes {
		out[i] = *n
	}
	return out
}

// nodeView is one node as the control API shows it.
type nodeView struct {
	ID       string `json:"id"`
	Hostname string `json:"hostname"`
	State    string `json:"state"`
	Running  int    `json:"running_tasks"`
}

func (s *sim) views() []nodeView {
	var out []nodeView
	for _, n := range s.snapshot() {
		v := nodeView{Hostname: n.hostname, State: n.state}
		if n.hollow != nil {
			v.ID = n.hollow.ID()
			if n.hollow.Removed() {
				v.State = "removed"
			}
		}
		if n.exec != nil {
			v.Running = n.exec.Running()
		}
		out = append(out, v)
	}
	return out
}

// selection names nodes by ID or hostname, or asks for count nodes chosen
// at random among those in a state.
type selection struct {
	refs  []string
	count int
}

// pick returns the nodes of sel that are in state from, or an error naming
// what cannot be chosen; it changes nothing.
func (s *sim) pick(sel selection, from string) ([]*simNode, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(sel.refs) > 0 {
		var out []*simNode
		for _, ref := range sel.refs {
			var found *simNode
			for _, n := range s.nodes {
				if n.hostname == ref || (n.hollow != nil && n.hollow.ID() == ref) {
					found = n
				}
			}
			switch {
			case found == nil:
				return nil, fmt.Errorf("no hollow node %q", ref)
			case found.state != from:
				return nil, fmt.Errorf("hollow node %s is %s, want %s", ref, found.state, from)
			}
			out = append(out, found)
		}
		return out, nil
	}
	var candidates []*simNode
	for _, n := range s.nodes {
		if n.state == from {
			candidates = append(candidates, n)
		}
	}
	if sel.count < 1 || sel.count > len(candidates) {
		return nil, fmt.Errorf("count %d: want 1 to %d (the %s nodes)", sel.count, len(candidates), from)
	}
	s.rand.Shuffle(len(candidates), func(i, j int) { candidates[i], candidates[j] = candidates[j], candidates[i] })
	return candidates[:sel.count], nil
}

// apply moves the selected nodes from one state to another: kill and pause
// stop the agent (no goodbye to the managers); a killed node's tasks are
// dropped and it never comes back; resume restarts the agent, which adopts
// the tasks still running.
func (s *sim) apply(sel selection, op string) ([]nodeView, error) {
	from, to := stateRunning, map[string]string{"kill": stateKilled, "pause": statePaused, "resume": stateRunning}[op]
	if op == "resume" {
		from = statePaused
	}
	nodes, err := s.pick(sel, from)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	for _, n := range nodes {
		n.state = to // claimed: a concurrent call cannot pick them again
	}
	ctx := s.ctx
	s.mu.Unlock()
	var wg sync.WaitGroup
	out := make([]nodeView, len(nodes))
	for i, n := range nodes {
		out[i] = nodeView{ID: n.hollow.ID(), Hostname: n.hostname, State: to}
		wg.Add(1)
		go func() {
			defer wg.Done()
			switch op {
			case "kill":
				n.hollow.Stop()
				list, _ := n.exec.List(ctx) // in memory: never fails
				for _, c := range list {
					_ = n.exec.Remove(ctx, c.TaskID)
				}
			case "pause":
				n.hollow.Stop()
			case "resume":
				n.hollow.Start(ctx)
			}
		}()
	}
	wg.Wait()
	s.log.Info("hollow nodes changed", "op", op, "count", len(out))
	return out, nil
}
