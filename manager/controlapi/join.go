package controlapi

import (
	"errors"
	"fmt"
	"math"
	"net"
	"net/http"
	"strconv"
	"strings"

	"github.com/shoal-dev/shoal/api"
	"github.com/shoal-dev/shoal/manager/admission"
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
	source := joinSource(r)
	if wait, ok := s.cfg.Admission.AllowJoin(source, req.Token); !ok {
		secs := max(1, int(math.Ceil(wait.Seconds())))
		w.Header().Set("Retry-After", strconv.Itoa(secs))
		writeError(w, http.StatusTooManyRequests, "join: too many joins from %s or with this token: try again in %d s", source, secs)
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
	if strings.TrimSpace(req.Description.Hostname) == "" {
		writeError(w, http.StatusBadRequest, "join: the node has no hostname: give it one with --hostname")
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
	if err := admission.RecordCert(node, certPEM, role, now); err != nil {
		writeError(w, http.StatusInternalServerError, "join: %v", err)
		return
	}
	if err := s.cfg.Admission.AddNode(r.Context(), node); err != nil {
		if errors.Is(err, admission.ErrNameTaken) {
			writeError(w, http.StatusConflict, "join: %v", err)
			return
		}
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

// joinSource is the address a join came from. A call forwarded by another
// manager carries the joining node's address in X-Forwarded-For, trusted
// only from a manager's certificate.
func joinSource(r *http.Request) string {
	if peerIsManager(r) {
		if xff := r.Header.Get("X-Forwarded-For"); xff != "" {
			parts := strings.Split(xff, ",")
			return strings.TrimSpace(parts[len(parts)-1])
		}
	}
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
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
	now := s.cfg.Clock.Now()
	certPEM, err := root.Sign([]byte(req.CSRPEM), ca.Identity{NodeID: node.ID, Role: string(node.Spec.Role), ClusterID: c.ID}, ips, now, ca.DefaultNodeCertTTL)
	if err != nil {
		writeError(w, http.StatusBadRequest, "renew certificate: %v", err)
		return
	}
	// Remember the certificate before handing it out, so that it can be
	// revoked with the node; a role change in between fails the write.
	err = s.cfg.Store.Update(r.Context(), func(tx *store.Tx) error {
		n := tx.Node(node.ID)
		if n == nil {
			return fmt.Errorf("node %s: %w", node.ID, store.ErrNotFound)
		}
		if n.Spec.Role != node.Spec.Role {
			return fmt.Errorf("node %s became a %s while its certificate was signed: %w", n.ID, n.Spec.Role, store.ErrConflict)
		}
		if err := admission.RecordCert(n, certPEM, n.Spec.Role, now); err != nil {
			return err
		}
		return tx.PutNode(n)
	})
	if err != nil {
		writeStoreError(w, "renew certificate", err)
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
