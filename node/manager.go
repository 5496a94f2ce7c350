package node

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/shoal-dev/shoal/api"
	"github.com/shoal-dev/shoal/manager"
	"github.com/shoal-dev/shoal/manager/admission"
	"github.com/shoal-dev/shoal/manager/ca"
)

// runningManager is the manager role while this node has it.
type runningManager struct {
	m      *manager.Manager
	reg    *prometheus.Registry
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// startManager opens raft, puts the manager API behind the node's API
// listener, finishes a pending bootstrap and, for a manager new to raft, asks to become a voter.
func (n *Node) startManager(ctx context.Context) error {
	st := n.state()
	n.mu.Lock()
	pool := n.pool
	n.mu.Unlock()
	dek, err := n.managerDEK(st)
	if err != nil {
		return err
	}
	reg := prometheus.NewRegistry()
	m, err := manager.Open(manager.Config{
		NodeID:        st.NodeID,
		DataDir:       n.paths.raft(),
		DEK:           dek,
		RaftBind:      n.listenAddr(st.RaftPort),
		RaftAdvertise: n.endpoints(st).Raft,
		RaftTLS:       n.withCurrentCert(ca.MutualTLS(pool, *n.currentCert(), string(api.RoleManager))),
		// Also used to read task logs from workers: no role check here.
		ForwardTLS:    n.withCurrentCert(ca.ClientTLS(pool, n.currentCert())),
		Membership:    membership{n.gossip},
		JoinBurst:     n.cfg.JoinBurst,
		JoinRate:      n.cfg.JoinRate,
		RaftHeartbeat: n.cfg.RaftHeartbeat,
		RaftElection:  n.cfg.RaftElection,
		Clock:         n.clock,
		Logger:        n.log,
		Registry:      reg,
	})
	if err != nil {
		return err
	}
	rm := &runningManager{m: m, reg: reg}
	mctx, cancel := context.WithCancel(ctx)
	rm.cancel = cancel
	rm.wg.Add(2)
	go func() { defer rm.wg.Done(); m.Run(mctx) }()
	go func() { defer rm.wg.Done(); n.followUnlockKey(mctx, m.Store()) }()
	n.mu.Lock()
	n.mgr = rm
	n.mu.Unlock()

	switch {
	case st.PendingCluster != nil:
		self := &api.Node{
			ID:          st.NodeID,
			Spec:        api.NodeSpec{Role: api.RoleManager, Availability: api.AvailabilityActive},
			Status:      api.NodeStatus{State: api.NodeStateReady, Addr: st.Addr},
			Description: n.agent.Description(),
			Endpoints:   n.endpoints(st),
		}
		if leaf := n.currentCert().Leaf; leaf != nil {
			self.Certs = []api.IssuedCert{{Serial: admission.Serial(leaf), Role: api.RoleManager, NotAfter: leaf.NotAfter}}
		}
		bctx, bcancel := context.WithTimeout(ctx, 30*time.Second)
		defer bcancel()
		if err := m.Bootstrap(bctx, st.PendingCluster, self); err != nil {
			return fmt.Errorf("bootstrap the new cluster: %w", err)
		}
		n.mu.Lock()
		n.st.PendingCluster = nil
		done := *n.st
		n.mu.Unlock()
		if err := saveState(n.paths, &done); err != nil {
			return err
		}
		n.log.Info("cluster bootstrapped", "cluster", st.ClusterID)
	case !m.HasState():
		rm.wg.Add(1)
		go func() { defer rm.wg.Done(); n.joinRaft(mctx) }()
	}
	return nil
}

// joinRaft asks the leader, through any manager, to add this node as a voter.
func (n *Node) joinRaft(ctx context.Context) {
	raftAddr := n.endpoints(n.state()).Raft
	delay := 200 * time.Millisecond
	for {
		var lastErr error
		for _, m := range n.managers() {
			if m.Raft == raftAddr {
				continue
			}
			c, err := n.dial(m.API)
			if err != nil {
				lastErr = err
				continue
			}
			cctx, cancel := context.WithTimeout(ctx, 15*time.Second)
			err = c.RaftJoin(cctx, api.RaftJoinRequest{RaftAddr: raftAddr})
			cancel()
			if err == nil {
				n.log.Info("joined raft as a voter", "via", m.API)
				return
			}
			lastErr = err
		}
		n.log.Warn("raft join failed; retrying", "err", lastErr)
		select {
		case <-ctx.Done():
			return
		case <-time.After(delay):
		}
		delay = min(2*delay, 5*time.Second)
	}
}

func (n *Node) stopManager() {
	n.mu.Lock()
	rm := n.mgr
	n.mgr = nil
	n.mu.Unlock()
	if rm == nil {
		return
	}
	rm.cancel()
	if err := rm.m.Close(); err != nil {
		n.log.Warn("stop raft", "err", err)
	}
	rm.wg.Wait()
}

func (n *Node) runningManager() *runningManager {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.mgr
}
