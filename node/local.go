package node

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/shoal-dev/shoal/api"
	"github.com/shoal-dev/shoal/internal/httpserve"
)

// serveSocket serves the root-only unix socket: local calls here, manager
// calls to the manager role as the local administrator.
func (n *Node) serveSocket() (func(), error) {
	path := n.paths.socket()
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("remove stale socket: %w", err)
	}
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", path, err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return nil, fmt.Errorf("restrict %s to root: %w", path, err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/info", n.info)
	mux.HandleFunc("POST /v1/leave", n.leaveHandler)
	mux.HandleFunc("POST /v1/unlock", func(w http.ResponseWriter, r *http.Request) {
		localError(w, http.StatusBadRequest, "this node is not locked: nothing to unlock")
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		if rm := n.runningManager(); rm != nil {
			rm.m.API().LocalHandler().ServeHTTP(w, r)
			return
		}
		localError(w, http.StatusServiceUnavailable, "this node is a worker: run this command on a manager")
	})
	srv := httpserve.New(mux)
	go func() { _ = srv.Serve(ln) }()
	return func() {
		_ = srv.Close()
		_ = os.Remove(path)
	}, nil
}

func localError(w http.ResponseWriter, code int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(api.Error{Message: msg})
}

func (n *Node) info(w http.ResponseWriter, r *http.Request) {
	st := n.state()
	out := api.Info{
		NodeID:    st.NodeID,
		ClusterID: st.ClusterID,
		Role:      st.Role,
		Addr:      st.Addr,
		Endpoints: n.endpoints(st),
		Engine:    n.agent.Engine(),
	}
	n.mu.Lock()
	out.LeaderID = n.leaderID
	n.mu.Unlock()
	if rm := n.runningManager(); rm != nil {
		out.IsLeader = rm.m.IsLeader()
		out.LeaderID = rm.m.Leader()
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(out)
}

func (n *Node) leaveHandler(w http.ResponseWriter, r *http.Request) {
	// Telling the managers and stopping every task may take longer than
	// the server's deadlines.
	httpserve.Extend(w, 2*time.Minute)
	req := leaveRequest{force: r.URL.Query().Get("force") != "", done: make(chan error, 1), answered: make(chan struct{})}
	defer close(req.answered)
	select {
	case n.leave <- req:
	case <-r.Context().Done():
		return
	}
	if err := <-req.done; err != nil {
		localError(w, http.StatusBadRequest, err.Error())
		return
	}
	w.WriteHeader(http.StatusNoContent)
	if f, ok := w.(http.Flusher); ok {
		f.Flush() // out before the process exits
	}
}

// doLeave takes this node out of the cluster and forgets its identity.
func (n *Node) doLeave(ctx context.Context, force bool) error {
	st := n.state()
	lastManager := st.Role == api.RoleManager && len(st.Managers) <= 1
	if st.Role == api.RoleManager && !force {
		return errors.New("this node is a manager: leaving takes it out of raft and can cost the cluster its quorum; demote it first (shoal node demote) or use --force")
	}
	if !lastManager {
		if err := n.leaveCluster(ctx); err != nil {
			if !force {
				return fmt.Errorf("leave: %w (use --force to leave anyway)", err)
			}
			n.log.Warn("leaving without telling the managers", "err", err)
		}
	}
	n.stopManager()
	// Like swarm, a node that leaves takes its task containers with it.
	if err := n.agent.RemoveAll(ctx); err != nil {
		n.log.Warn("remove task containers on leave", "err", err)
	}
	if err := n.gossip.Leave(2 * time.Second); err != nil {
		n.log.Warn("gossip leave", "err", err)
	}
	if err := wipe(n.paths); err != nil {
		return fmt.Errorf("left the cluster, but clearing %s failed: %w", n.cfg.DataDir, err)
	}
	n.log.Info("left the cluster")
	return nil
}

func (n *Node) leaveCluster(ctx context.Context) error {
	var lastErr error = errors.New("no manager known")
	for _, m := range n.managers() {
		c, err := n.dial(m.API)
		if err != nil {
			lastErr = err
			continue
		}
		cctx, cancel := context.WithTimeout(ctx, 15*time.Second)
		err = c.LeaveCluster(cctx)
		cancel()
		if err == nil {
			return nil
		}
		lastErr = err
	}
	return lastErr
}
