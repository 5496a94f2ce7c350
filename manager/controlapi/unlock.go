package controlapi

import (
	"errors"
	"net/http"

	"github.com/shoal-dev/shoal/api"
	"github.com/shoal-dev/shoal/manager/deks"
	"github.com/shoal-dev/shoal/store"
)

// The unlock key (autolock) is kept in the cluster object, so that every
// manager can wrap its own key file with it; the raft data it sits in is
// itself sealed by each manager's DEK.

func (s *Server) routeUnlockKey() {
	s.route("GET /v1/unlock-key", managers, false, s.getUnlockKey)
	s.route("POST /v1/unlock-key/rotate", managers, true, s.rotateUnlockKey)
}

var errNoAutolock = errors.New("autolock is off in this cluster: there is no unlock key (start the cluster with shoal init --autolock)")

func (s *Server) getUnlockKey(w http.ResponseWriter, r *http.Request) {
	var c *api.Cluster
	s.cfg.Store.View(func(tx store.ReadTx) { c = tx.Cluster() })
	if c == nil || !c.AutoLock {
		writeError(w, http.StatusBadRequest, "unlock key: %v", errNoAutolock)
		return
	}
	writeJSON(w, http.StatusOK, api.UnlockKey{Key: c.UnlockKey})
}

func (s *Server) rotateUnlockKey(w http.ResponseWriter, r *http.Request) {
	var out api.UnlockKey
	err := s.cfg.Store.Update(r.Context(), func(tx *store.Tx) error {
		c := tx.Cluster()
		if c == nil || !c.AutoLock {
			return badRequest("%v", errNoAutolock)
		}
		c.UnlockKey = deks.NewUnlockKey()
		out.Key = c.UnlockKey
		return tx.PutCluster(c)
	})
	if err != nil {
		writeStoreError(w, "rotate unlock key", err)
		return
	}
	s.log.Info("unlock key rotated")
	writeJSON(w, http.StatusOK, out)
}
