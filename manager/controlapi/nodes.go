package controlapi

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"

	"github.com/shoal-dev/shoal/api"
	"github.com/shoal-dev/shoal/manager/admission"
	"github.com/shoal-dev/shoal/store"
)

// view adds the manager status that only raft and gossip know.
func (s *Server) view(n *api.Node, voters []string, leaderID string) api.NodeView {
	v := api.NodeView{Node: *n}
	if n.Spec.Role != api.RoleManager && !slices.Contains(voters, n.ID) {
		return v
	}
	v.RaftMember = slices.Contains(voters, n.ID)
	switch {
	case n.ID == leaderID:
		v.ManagerStatus = api.ManagerLeader
	case v.RaftMember && (n.ID == s.cfg.NodeID || s.cfg.Gossip.Alive(n.ID)):
		v.ManagerStatus = api.ManagerReachable
	default:
		v.ManagerStatus = api.ManagerUnreachable
	}
	return v
}

func (s *Server) raftView() ([]string, string) {
	voters, err := s.cfg.Raft.Voters()
	if err != nil {
		s.log.Warn("list raft voters", "err", err)
	}
	leaderID, _ := s.cfg.Raft.Leader()
	return voters, leaderID
}

func (s *Server) listNodes(w http.ResponseWriter, r *http.Request) {
	voters, leaderID := s.raftView()
	out := []api.NodeView{}
	s.cfg.Store.View(func(tx store.ReadTx) {
		for _, n := range tx.Nodes() {
			out = append(out, s.view(n, voters, leaderID))
		}
	})
	writeJSON(w, http.StatusOK, out)
}

// findNode resolves ID, ID prefix or hostname to exactly one node.
func findNode(tx store.ReadTx, ref string) (*api.Node, error) {
	return one("node", ref, tx.FindNodes(ref), func(o *api.Node) string { return o.ID })
}

func (s *Server) getNode(w http.ResponseWriter, r *http.Request) {
	var n *api.Node
	var err error
	s.cfg.Store.View(func(tx store.ReadTx) { n, err = findNode(tx, r.PathValue("ref")) })
	if err != nil {
		writeStoreError(w, "inspect", err)
		return
	}
	voters, leaderID := s.raftView()
	writeJSON(w, http.StatusOK, s.view(n, voters, leaderID))
}

// changeNode applies change to the node named in the path in one write and answers with the result.
func (s *Server) changeNode(w http.ResponseWriter, r *http.Request, what string, change func(tx *store.Tx, n *api.Node) error) *api.Node {
	var out *api.Node
	err := s.cfg.Store.Update(r.Context(), func(tx *store.Tx) error {
		n, err := findNode(tx, r.PathValue("ref"))
		if err != nil {
			return err
		}
		if err := change(tx, n); err != nil {
			return err
		}
		out = n
		return tx.PutNode(n)
	})
	if err != nil {
		writeStoreError(w, what, err)
		return nil
	}
	// Re-read for the version the write was given.
	s.cfg.Store.View(func(tx store.ReadTx) {
		if n := tx.Node(out.ID); n != nil {
			out = n
		}
	})
	return out
}

func (s *Server) answerNode(w http.ResponseWriter, n *api.Node) {
	voters, leaderID := s.raftView()
	writeJSON(w, http.StatusOK, s.view(n, voters, leaderID))
}

func (s *Server) updateNode(w http.ResponseWriter, r *http.Request) {
	var u api.NodeUpdate
	if !decode(w, r, &u, false) {
		return
	}
	switch u.Availability {
	case "", api.AvailabilityActive, api.AvailabilityPause, api.AvailabilityDrain:
	default:
		writeError(w, http.StatusBadRequest, "availability %q: want active, pause or drain", u.Availability)
		return
	}
	for k := range u.LabelAdd {
		if strings.TrimSpace(k) == "" || strings.ContainsAny(k, "= ") {
			writeError(w, http.StatusBadRequest, "label key %q: must be non-empty without '=' or spaces", k)
			return
		}
	}
	n := s.changeNode(w, r, "update node", func(_ *store.Tx, n *api.Node) error {
		if u.Availability != "" {
			n.Spec.Availability = u.Availability
		}
		for _, k := range u.LabelRm {
			if _, ok := n.Spec.Labels[k]; !ok {
				return badRequest("node %s has no label %q", n.ID, k)
			}
			delete(n.Spec.Labels, k)
		}
		if len(u.LabelAdd) > 0 && n.Spec.Labels == nil {
			n.Spec.Labels = map[string]string{}
		}
		for k, v := range u.LabelAdd {
			n.Spec.Labels[k] = v
		}
		return checkLabels("node labels", n.Spec.Labels)
	})
	if n != nil {
		s.log.Info("node updated", "node", n.ID, "availability", n.Spec.Availability)
		s.answerNode(w, n)
	}
}

func (s *Server) promoteNode(w http.ResponseWriter, r *http.Request) {
	n := s.changeNode(w, r, "promote", func(_ *store.Tx, n *api.Node) error {
		if n.Spec.Role == api.RoleManager {
			return badRequest("node %s is already a manager", n.ID)
		}
		if n.Status.State == api.NodeStateDown {
			return badRequest("node %s is down: it must be up to become a manager", n.ID)
		}
		n.Spec.Role = api.RoleManager
		return nil
	})
	if n != nil {
		// The node sees its new role in its next heartbeat, renews its
		// certificate and asks to join raft.
		s.log.Info("node promoted", "node", n.ID)
		s.answerNode(w, n)
	}
}

func (s *Server) demoteNode(w http.ResponseWriter, r *http.Request) {
	n := s.changeNode(w, r, "demote", func(tx *store.Tx, n *api.Node) error {
		if n.Spec.Role != api.RoleManager {
			return badRequest("node %s is already a worker", n.ID)
		}
		if err := s.checkManagerRemoval(tx, n, "demote"); err != nil {
			return err
		}
		n.Spec.Role = api.RoleWorker
		return s.revokeCerts(tx, n, api.RoleManager)
	})
	if n == nil {
		return
	}
	if err := s.cfg.Raft.RemoveServer(r.Context(), n.ID); err != nil {
		writeError(w, http.StatusServiceUnavailable, "demote %s: node is a worker now but raft removal failed: %v", n.ID, err)
		return
	}
	s.log.Info("node demoted", "node", n.ID)
	s.answerNode(w, n)
}

// checkManagerRemoval refuses to take away the last manager or a manager
// whose loss would leave the remaining ones without a quorum.
func (s *Server) checkManagerRemoval(tx store.ReadTx, n *api.Node, what string) error {
	voters, _ := s.raftView()
	remaining := 0
	reachable := 0
	for _, m := range tx.Nodes() {
		if m.Spec.Role != api.RoleManager || m.ID == n.ID {
			continue
		}
		remaining++
		if m.ID == s.cfg.NodeID || (slices.Contains(voters, m.ID) && s.cfg.Gossip.Alive(m.ID)) {
			reachable++
		}
	}
	if remaining == 0 {
		return badRequest("cannot %s %s: it is the last manager of the cluster", what, n.ID)
	}
	if reachable < remaining/2+1 {
		return badRequest("cannot %s %s: only %d of the %d other managers are reachable, which is not a quorum", what, n.ID, reachable, remaining)
	}
	return nil
}

func (s *Server) removeNode(w http.ResponseWriter, r *http.Request) {
	force := r.URL.Query().Get("force") != ""
	var removed *api.Node
	err := s.cfg.Store.Update(r.Context(), func(tx *store.Tx) error {
		n, err := findNode(tx, r.PathValue("ref"))
		if err != nil {
			return err
		}
		if n.Spec.Role == api.RoleManager {
			return badRequest("node %s is a manager: demote it first (shoal node demote %s)", n.ID, n.ID)
		}
		if n.Status.State != api.NodeStateDown && !force {
			return badRequest("node %s is %s, not down: stop it or run shoal leave on it first, or use --force", n.ID, n.Status.State)
		}
		removed = n
		if err := s.revokeCerts(tx, n, ""); err != nil {
			return err
		}
		return tx.DeleteNode(n.ID)
	})
	if err != nil {
		writeStoreError(w, "remove node", err)
		return
	}
	s.log.Info("node removed", "node", removed.ID, "forced", force)
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) heartbeat(w http.ResponseWriter, r *http.Request) {
	// An empty body says nothing changed since the node's last full beat:
	// nothing to decode, the common case.
	var hb *api.Heartbeat
	var full api.Heartbeat
	if present, ok := decodeOptional(w, r, &full); !ok {
		return
	} else if present {
		hb = &full
	}
	resp, err := s.cfg.Dispatcher.Heartbeat(r.Context(), callerOf(r).NodeID, joinSource(r), hb)
	if err != nil {
		writeStoreError(w, "heartbeat", err)
		return
	}
	if resp.Managers == nil { // the dispatcher keeps them while it leads
		resp.Managers = s.managerEndpoints()
	}
	resp.LeaderID = s.cfg.NodeID
	writeJSON(w, http.StatusOK, resp)
}

// sessionLeave removes the calling node from the cluster: its record and,
// for a manager, its raft membership.
func (s *Server) sessionLeave(w http.ResponseWriter, r *http.Request) {
	id := callerOf(r).NodeID
	var wasManager bool
	err := s.cfg.Store.Update(r.Context(), func(tx *store.Tx) error {
		n := tx.Node(id)
		if n == nil {
			return fmt.Errorf("node %s: %w", id, store.ErrNotFound)
		}
		wasManager = n.Spec.Role == api.RoleManager
		if err := s.revokeCerts(tx, n, ""); err != nil {
			return err
		}
		return tx.DeleteNode(id)
	})
	if err != nil {
		writeStoreError(w, "leave", err)
		return
	}
	if wasManager {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), raftChangeTimeout)
		defer cancel()
		if err := s.cfg.Raft.RemoveServer(ctx, id); err != nil {
			writeError(w, http.StatusServiceUnavailable, "leave: node removed but its raft membership could not be: %v", err)
			return
		}
	}
	s.log.Info("node left", "node", id, "manager", wasManager)
	w.WriteHeader(http.StatusNoContent)
}

// revokeCerts puts n's certificates of role (all if empty) on the cluster's
// deny list, in the write that demotes or removes n, so no moment passes in
// which the store says "not a manager" and raft still takes the certificate.
func (s *Server) revokeCerts(tx *store.Tx, n *api.Node, role api.NodeRole) error {
	c := tx.Cluster()
	if c == nil {
		return nil
	}
	admission.Revoke(c, n, role)
	admission.PruneRevoked(c, s.cfg.Clock.Now())
	return tx.PutCluster(c)
}
