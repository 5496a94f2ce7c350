package node

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"os"

	"github.com/shoal-dev/shoal/agent/volume"
	"github.com/shoal-dev/shoal/api"
	"github.com/shoal-dev/shoal/manager/ca"
)

// volumes is where the node's named volumes live: kept by shoal leave, as
// docker keeps its volumes when a node leaves a swarm.
func (p paths) volumes() string { return p.dir + "/volumes" }

// volumeUsers is an executor that can tell which tasks mount a volume.
type volumeUsers interface {
	VolumeUsers(ctx context.Context, name string) ([]string, error)
}

func (n *Node) usedBy(ctx context.Context) func(string) ([]string, error) {
	return func(name string) ([]string, error) {
		e := n.agent.Executor()
		u, ok := e.(volumeUsers)
		if e == nil || !ok {
			return nil, errors.New("this node's container engine is not connected")
		}
		return u.VolumeUsers(ctx, name)
	}
}

// listVolumes answers a manager with the node's volumes and the tasks on
// the node that use each.
func (n *Node) listVolumes(w http.ResponseWriter, r *http.Request) {
	if id, ok := ca.PeerIdentity(r.TLS); !ok || id.Role != string(api.RoleManager) {
		localError(w, http.StatusForbidden, "volumes are for managers")
		return
	}
	if n.volumes == nil {
		writeLocalJSON(w, []api.Volume{})
		return
	}
	vols, err := n.volumes.List()
	if err != nil {
		localError(w, http.StatusInternalServerError, err.Error())
		return
	}
	used := n.usedBy(r.Context())
	for i := range vols {
		if vols[i].UsedBy, err = used(vols[i].Name); err != nil {
			localError(w, http.StatusServiceUnavailable, err.Error())
			return
		}
	}
	if vols == nil {
		vols = []api.Volume{}
	}
	writeLocalJSON(w, vols)
}

// removeVolume removes a volume of the node unless a task on it uses it.
func (n *Node) removeVolume(w http.ResponseWriter, r *http.Request) {
	if id, ok := ca.PeerIdentity(r.TLS); !ok || id.Role != string(api.RoleManager) {
		localError(w, http.StatusForbidden, "volumes are for managers")
		return
	}
	if n.volumes == nil {
		localError(w, http.StatusNotFound, "this node keeps no volumes")
		return
	}
	name := r.PathValue("name")
	if err := api.ValidVolumeName(name); err != nil {
		localError(w, http.StatusBadRequest, err.Error())
		return
	}
	err := n.volumes.Remove(name, n.usedBy(r.Context()))
	switch {
	case err == nil:
		n.log.Info("volume removed", "volume", name)
		w.WriteHeader(http.StatusNoContent)
	case errors.Is(err, volume.ErrNotFound):
		localError(w, http.StatusNotFound, err.Error())
	case errors.Is(err, volume.ErrInUse):
		localError(w, http.StatusConflict, err.Error())
	default:
		localError(w, http.StatusInternalServerError, err.Error())
	}
}

func writeLocalJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

// logBinary is this binary, the log writer of tasks with a terminal; ""
// if it cannot be found (such tasks are then refused).
func logBinary() string {
	p, err := os.Executable()
	if err != nil {
		return ""
	}
	return p
}
