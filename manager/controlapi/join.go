package controlapi

import (
	"fmt"
	"net"
	"net/http"

	"github.com/shoal-dev/shoal/api"
	"github.com/shoal-dev/shoal/manager/ca"
	"github.com/shoal-dev/shoal/store"
)

func (s *Server) cluster() *api.Cluster {
	var c *api.Cluster
	s.cfg.Store.View(func(tx store.ReadTx) { c = tx.Cluster() })
	return c
}

func (s *Server) getCA(w http.ResponseWriter, r *http.Request) {
	c := s.cluster()
	if c == nil {
		writeError(w, http.StatusServiceUnavailable, "cluster not initialized yet")
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"ca_cert_pem": c.CACertPEM})
}

// roleForToken checks a presented join token against the cluster's current ones.
func roleForToken(c *api.Cluster, token string) (api.NodeRole, int, error) {
	parsed, err := ca.ParseJoinToken(token)
	if err != nil {
		return "", http.StatusBadRequest, fmt.Errorf("invalid join token: %w", err)
	}
	root, err := ca.ParseRootCA([]byte(c.CACertPEM), nil)
	if err != nil {
		return "", http.StatusInternalServerError, fmt.Errorf("cluster CA: %w", err)
	}
	if parsed.CADigest != ca.Digest(root.Cert) {
		return "", http.StatusForbidden, fmt.Errorf("join token is for another cluster: its CA digest does not match this cluster's CA")
	}
	switch {
	case ca.TokenMatches(token, c.ManagerToken):
		return api.RoleManager, 0, nil
	case ca.TokenMatches(token, c.WorkerToken):
		return api.RoleWorker, 0, nil
	}
	return "", http.StatusForbidden, fmt.Errorf("join token refused: it was rotated or never issued by this cluster")
}

func (s *Server) join(w http.ResponseWriter, r *http.Request) {
	var req api.JoinRequest
	if !decode(w, r, &req, false) {
		return
	}
	c := s.cluster()
	if c == nil {
		writeError(w, http.StatusServiceUnavailable, "cluster not initialized yet")
		return
	}
	role, code, err := roleForToken(c, req.Token)
	if err != nil {
		writeError(w, code, "%v", err)
		return
	}
	ip := net.ParseIP(req.Addr)
	if ip == nil {
		writeError(w, http.StatusBadRequest, "join: advertise address %q is not an IP address", req.Addr)
		return
	}
	if err := checkEndpoints(req.Endpoints, role); err != nil {
		writeError(w, http.StatusBadRequest, "join: %v", err)
		return
	}
	root, err := ca.ParseRootCA([]byte(c.CACertPEM), []byte(c.CAKeyPEM))
	if err != nil {
		writeError(w, http.StatusInternalServerError, "cluster CA: %v", err)
		return
	}
	id := api.NewID()
	now := s.cfg.Clock.Now()
	certPEM, err := root.Sign([]byte(req.CSRPEM), ca.Identity{NodeID: id, Role: string(role), ClusterID: c.ID}, []net.IP{ip}, now, ca.DefaultNodeCertTTL)
	if err != nil {
		writeError(w, http.StatusBadRequest, "join: sign certificate: %v", err)
		return
	}
	node := &api.Node{
		ID:          id,
		Spec:        api.NodeSpec{Role: role, Availability: api.AvailabilityActive},
		Status:      api.NodeStatus{State: api.NodeStateUnknown, Addr: req.Addr},
		Description: req.Description,
		Endpoints:   req.Endpoints,
	}
	if err := s.cfg.Store.Update(r.Context(), func(tx *store.Tx) error { return tx.PutNode(node) }); err != nil {
		writeStoreError(w, "join", err)
		return
	}
	s.log.Info("node joined", "node", id, "role", role, "addr", req.Addr, "hostname", req.Description.Hostname)
	writeJSON(w, http.StatusOK, api.JoinResponse{
		NodeID:    id,
		Role:      role,
		ClusterID: c.ID,
		CertPEM:   string(certPEM),
		CACertPEM: c.CACertPEM,
		GossipKey: c.GossipKey,
		Managers:  s.managerEndpoints(),
	})
}

func checkEndpoints(e api.Endpoints, role api.NodeRole) error {
	check := func(name, addr string, required bool) error {
		if addr == "" && !required {
			return nil
		}
		if _, _, err := net.SplitHostPort(addr); err != nil {
			return fmt.Errorf("%s endpoint %q: %w", name, addr, err)
		}
		return nil
	}
	if err := check("gossip", e.Gossip, true); err != nil {
		return err
	}
	if err := check("api", e.API, role == api.RoleManager); err != nil {
		return err
	}
	if err := check("raft", e.Raft, role == api.RoleManager); err != nil {
		return err
	}
	return check("metrics", e.Metrics, false)
}

func (s *Server) managerEndpoints() []api.Endpoints {
	var out []api.Endpoints
	s.cfg.Store.View(func(tx store.ReadTx) {
		for _, n := range tx.Nodes() {
			if n.Spec.Role == api.RoleManager && n.Endpoints.API != "" {
				out = append(out, n.Endpoints)
			}
		}
	})
	return out
}

func (s *Server) raftJoin(w http.ResponseWriter, r *http.Request) {
	caller := callerOf(r)
	var req api.RaftJoinRequest
	if !decode(w, r, &req, false) {
		return
	}
	if _, _, err := net.SplitHostPort(req.RaftAddr); err != nil {
		writeError(w, http.StatusBadRequest, "raft join: raft address %q: %v", req.RaftAddr, err)
		return
	}
	var node *api.Node
	s.cfg.Store.View(func(tx store.ReadTx) { node = tx.Node(caller.NodeID) })
	if node == nil {
		writeError(w, http.StatusNotFound, "raft join: node %s is not in the cluster", caller.NodeID)
		return
	}
	if node.Spec.Role != api.RoleManager {
		writeError(w, http.StatusForbidden, "raft join: node %s is a %s now, not a manager", caller.NodeID, node.Spec.Role)
		return
	}
	if err := s.cfg.Raft.AddVoter(r.Context(), caller.NodeID, req.RaftAddr); err != nil {
		writeError(w, http.StatusServiceUnavailable, "raft join %s: %v", caller.NodeID, err)
		return
	}
	s.log.Info("manager added to raft", "node", caller.NodeID, "raft_addr", req.RaftAddr)
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) renewCert(w http.ResponseWriter, r *http.Request) {
	caller := callerOf(r)
	var req api.CertRequest
	if !decode(w, r, &req, false) {
		return
	}
	var node *api.Node
	var c *api.Cluster
	s.cfg.Store.View(func(tx store.ReadTx) { node, c = tx.Node(caller.NodeID), tx.Cluster() })
	if node == nil || c == nil {
		writeError(w, http.StatusNotFound, "renew certificate: node %s is not in the cluster", caller.NodeID)
		return
	}
	root, err := ca.ParseRootCA([]byte(c.CACertPEM), []byte(c.CAKeyPEM))
	if err != nil {
		writeError(w, http.StatusInternalServerError, "cluster CA: %v", err)
		return
	}
	var ips []net.IP
	if ip := net.ParseIP(node.Status.Addr); ip != nil {
		ips = append(ips, ip)
	}
	certPEM, err := root.Sign([]byte(req.CSRPEM), ca.Identity{NodeID: node.ID, Role: string(node.Spec.Role), ClusterID: c.ID}, ips, s.cfg.Clock.Now(), ca.DefaultNodeCertTTL)
	if err != nil {
		writeError(w, http.StatusBadRequest, "renew certificate: %v", err)
		return
	}
	writeJSON(w, http.StatusOK, api.CertResponse{CertPEM: string(certPEM), Role: node.Spec.Role})
}

func (s *Server) joinTokens(w http.ResponseWriter, r *http.Request) {
	c := s.cluster()
	if c == nil {
		writeError(w, http.StatusServiceUnavailable, "cluster not initialized yet")
		return
	}
	writeJSON(w, http.StatusOK, api.JoinTokens{Worker: c.WorkerToken, Manager: c.ManagerToken})
}

func (s *Server) rotateJoinToken(w http.ResponseWriter, r *http.Request) {
	role := api.NodeRole(r.URL.Query().Get("role"))
	if role != api.RoleWorker && role != api.RoleManager {
		writeError(w, http.StatusBadRequest, "rotate join token: role %q: want worker or manager", role)
		return
	}
	var out api.JoinTokens
	err := s.cfg.Store.Update(r.Context(), func(tx *store.Tx) error {
		c := tx.Cluster()
		if c == nil {
			return fmt.Errorf("cluster not initialized yet")
		}
		root, err := ca.ParseRootCA([]byte(c.CACertPEM), nil)
		if err != nil {
			return err
		}
		token, err := ca.NewJoinToken(ca.Digest(root.Cert))
		if err != nil {
			return err
		}
		if role == api.RoleWorker {
			c.WorkerToken = token
		} else {
			c.ManagerToken = token
		}
		out = api.JoinTokens{Worker: c.WorkerToken, Manager: c.ManagerToken}
		return tx.PutCluster(c)
	})
	if err != nil {
		writeStoreError(w, "rotate join token", err)
		return
	}
	s.log.Info("join token rotated", "role", role)
	writeJSON(w, http.StatusOK, out)
}
