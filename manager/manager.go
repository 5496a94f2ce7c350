package manager

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/shoal-dev/shoal/api"
	"github.com/shoal-dev/shoal/clock"
	"github.com/shoal-dev/shoal/manager/admission"
	"github.com/shoal-dev/shoal/manager/allocator"
	"github.com/shoal-dev/shoal/manager/controlapi"
	"github.com/shoal-dev/shoal/manager/dispatcher"
	"github.com/shoal-dev/shoal/manager/orchestrator"
	mraft "github.com/shoal-dev/shoal/manager/raft"
	"github.com/shoal-dev/shoal/manager/scheduler"
	"github.com/shoal-dev/shoal/store"
)

// Membership is what gossip says about other nodes.
type Membership interface {
	Alive(id string) bool
	Dead(id string) bool
}

// Config wires a Manager.
type Config struct {
	NodeID string
	// DataDir is the manager's own directory (raft log and snapshots).
	DataDir string
	// DEK seals the raft log and snapshots on disk; nil leaves them plain.
	DEK           []byte
	RaftBind      string
	RaftAdvertise string
	// RaftTLS is mutual TLS restricted to manager peers.
	RaftTLS *tls.Config
	// ForwardTLS is the client TLS used to forward API calls to the leader.
	ForwardTLS *tls.Config
	Membership Membership
	// JoinBurst and JoinRate limit joins per source address and per token
	// (JoinRate 0 disables the limit, for simulated nodes).
	JoinBurst int
	JoinRate  float64
	// RaftHeartbeat and RaftElection are raft's timeouts; zero takes
	// manager/raft's defaults. The leader lease is half the heartbeat timeout.
	RaftHeartbeat, RaftElection time.Duration
	Clock                       clock.Clock
	Logger                      *slog.Logger
	Registry                    prometheus.Registerer
}

// Manager is one running manager role.
type Manager struct {
	cfg        Config
	log        *slog.Logger
	raft       *mraft.Raft
	store      *store.Store
	dispatcher *dispatcher.Dispatcher
	api        *controlapi.Server
	sched      *schedulerMetrics
	orch       *orchestrator.Orchestrator
	alloc      *allocator.Allocator
	admission  *admission.Admission

	closeOnce sync.Once
}

// Open starts raft (without bootstrapping) and the store behind it.
func Open(cfg Config) (*Manager, error) {
	m := &Manager{cfg: cfg, log: cfg.Logger.With("component", "manager")}
	m.store = store.New(cfg.Clock, cfg.Logger)
	m.admission = admission.New(admission.Config{
		Store: m.store, Clock: cfg.Clock, Logger: cfg.Logger, Registry: cfg.Registry,
		JoinBurst: cfg.JoinBurst, JoinRate: cfg.JoinRate,
	})
	r, err := mraft.Open(mraft.Config{
		NodeID:        cfg.NodeID,
		DataDir:       cfg.DataDir,
		DEK:           cfg.DEK,
		BindAddr:      cfg.RaftBind,
		AdvertiseAddr: cfg.RaftAdvertise,
		// Raft takes manager certificates only, and none of a node
		// demoted or removed since: those still verify until they expire.
		TLS:      m.admission.GuardTLS(cfg.RaftTLS),
		FSM:      m.store,
		Logger:   cfg.Logger,
		Registry: cfg.Registry,

		HeartbeatTimeout:   cfg.RaftHeartbeat,
		ElectionTimeout:    cfg.RaftElection,
		LeaderLeaseTimeout: cfg.RaftHeartbeat / 2,
	})
	if err != nil {
		return nil, fmt.Errorf("open raft: %w", err)
	}
	m.raft = r
	m.store.SetProposer(proposer{r})
	m.dispatcher = dispatcher.New(dispatcher.Config{
		Store: m.store, Gossip: cfg.Membership, Clock: cfg.Clock, Logger: cfg.Logger, Registry: cfg.Registry,
	})
	m.api = controlapi.New(controlapi.Config{
		NodeID:     cfg.NodeID,
		Store:      m.store,
		Raft:       raftView{r},
		Gossip:     cfg.Membership,
		Dispatcher: m.dispatcher,
		Admission:  m.admission,
		CheckConstraint: func(expr string) error {
			_, err := scheduler.ParseConstraint(expr)
			return err
		},
		ForwardTLS: cfg.ForwardTLS,
		Clock:      cfg.Clock,
		Logger:     cfg.Logger,
	})
	m.sched = newSchedulerMetrics(cfg.Registry)
	m.orch = orchestrator.New(orchestrator.Config{Store: m.store, Clock: cfg.Clock, Logger: cfg.Logger, Registry: cfg.Registry})
	m.alloc = allocator.New(allocator.Config{Store: m.store, Clock: cfg.Clock, Logger: cfg.Logger, Registry: cfg.Registry})
	if cfg.Registry != nil {
		cfg.Registry.MustRegister(newStateCollector(m.store))
	}
	return m, nil
}

// HasState reports whether raft found earlier state on disk.
func (m *Manager) HasState() bool { return m.raft.HasExistingState() }

// Store is the replicated state.
func (m *Manager) Store() *store.Store { return m.store }

// API is the control API server.
func (m *Manager) API() *controlapi.Server { return m.api }

// IsLeader reports whether this manager leads.
func (m *Manager) IsLeader() bool { return m.raft.IsLeader() }

// Leader is the current leader's ID, "" if unknown.
func (m *Manager) Leader() string {
	id, _ := m.raft.Leader()
	return id
}

// Bootstrap makes this manager the single voter of a new cluster and writes
// the cluster object and its own node record.
func (m *Manager) Bootstrap(ctx context.Context, cluster *api.Cluster, self *api.Node) error {
	if !m.raft.HasExistingState() {
		if err := m.raft.Bootstrap(); err != nil {
			return fmt.Errorf("bootstrap raft: %w", err)
		}
	}
	return m.EnsureCluster(ctx, cluster, self)
}

// EnsureCluster writes the cluster object and node record if the store has
// none yet; it finishes a bootstrap that was cut short.
func (m *Manager) EnsureCluster(ctx context.Context, cluster *api.Cluster, self *api.Node) error {
	if err := m.WaitLeader(ctx); err != nil {
		return err
	}
	return m.store.Update(ctx, func(tx *store.Tx) error {
		if tx.Cluster() != nil {
			return nil
		}
		if err := tx.PutCluster(cluster); err != nil {
			return err
		}
		return tx.PutNode(self)
	})
}

// WaitLeader waits until some leader is known.
func (m *Manager) WaitLeader(ctx context.Context) error {
	tick, stop := m.cfg.Clock.NewTicker(20 * time.Millisecond)
	defer stop()
	for {
		if id, _ := m.raft.Leader(); id != "" {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("wait for a raft leader: %w", ctx.Err())
		case <-tick:
		}
	}
}

// Run runs the leader-only controllers while this manager leads, until ctx ends.
func (m *Manager) Run(ctx context.Context) {
	changes, cancelSub := m.raft.LeaderChanges()
	defer cancelSub()
	var stopLeading context.CancelFunc
	var wg sync.WaitGroup
	lead := func(on bool) {
		if on && stopLeading == nil {
			m.log.Info("leading: starting controllers")
			var lctx context.Context
			lctx, stopLeading = context.WithCancel(ctx)
			wg.Add(1)
			go func() {
				defer wg.Done()
				// Until the FSM has applied everything the old leader
				// committed, this store is behind: decide nothing yet.
				if err := m.raft.Barrier(lctx); err != nil {
					m.log.Warn("leader barrier failed; controllers wait for the next term", "err", err)
					return
				}
				wg.Add(2)
				go func() { defer wg.Done(); m.runScheduler(lctx) }()
				go func() { defer wg.Done(); m.orch.Run(lctx) }()
				wg.Add(2)
				go func() { defer wg.Done(); m.alloc.Run(lctx) }()
				go func() { defer wg.Done(); m.admission.Run(lctx) }()
				m.dispatcher.Run(lctx)
			}()
		}
		if !on && stopLeading != nil {
			m.log.Info("no longer leading: stopping controllers")
			stopLeading()
			wg.Wait()
			stopLeading = nil
		}
	}
	lead(m.raft.IsLeader())
	for {
		select {
		case <-ctx.Done():
			lead(false)
			return
		case on := <-changes:
			lead(on)
		}
	}
}

// Close stops raft.
func (m *Manager) Close() error {
	var err error
	m.closeOnce.Do(func() { err = m.raft.Shutdown() })
	return err
}

// proposer sends store change sets through raft.
type proposer struct{ r *mraft.Raft }

func (p proposer) Propose(ctx context.Context, data []byte) (any, error) {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
	}
	return p.r.Apply(ctx, data)
}

// raftView adapts raft to what the API needs.
type raftView struct{ r *mraft.Raft }

func (v raftView) IsLeader() bool                    { return v.r.IsLeader() }
func (v raftView) Leader() (string, string)          { return v.r.Leader() }
func (v raftView) Barrier(ctx context.Context) error { return v.r.Barrier(ctx) }
func (v raftView) SinceContact() time.Duration       { return time.Since(v.r.LastContact()) }
func (v raftView) LeaderWatch() controlapi.Leadership {
	l := v.r.LeaderWatch()
	return controlapi.Leadership{ID: l.ID, Gen: l.Gen, Changed: l.Changed}
}
func (v raftView) RemoveServer(ctx context.Context, id string) error {
	return v.r.RemoveServer(ctx, id)
}
func (v raftView) AddVoter(ctx context.Context, id, addr string) error {
	return v.r.AddVoter(ctx, id, addr)
}
func (v raftView) Voters() ([]string, error) {
	servers, err := v.r.Servers()
	if err != nil {
		return nil, err
	}
	var ids []string
	for _, s := range servers {
		if s.Voter {
			ids = append(ids, s.ID)
		}
	}
	return ids, nil
}

// IsNoQuorum reports whether err means the managers lack a quorum or leader.
func IsNoQuorum(err error) bool {
	return errors.Is(err, mraft.ErrNoQuorum) || errors.Is(err, mraft.ErrNotLeader)
}
