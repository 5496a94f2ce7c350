package controlapi

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/shoal-dev/shoal/api"
	"github.com/shoal-dev/shoal/store"
)

// nodeCallTimeout bounds one call to a node for its volumes.
const nodeCallTimeout = 10 * time.Second

// Volumes are local to each node and the node is the authority on them:
// the managers do not keep them in the store but ask the nodes, as they do
// for task logs (see docs/architecture.md, Volumes).

type volumeNode struct {
	id, hostname, api string
}

// volumeNodes are the nodes the request names (?node=ID|HOSTNAME), or every
// ready node with an API address.
func (s *Server) volumeNodes(r *http.Request) ([]volumeNode, error) {
	ref := r.URL.Query().Get("node")
	var out []volumeNode
	var err error
	s.cfg.Store.View(func(tx store.ReadTx) {
		var nodes []*api.Node
		if ref != "" {
			var n *api.Node
			if n, err = findNode(tx, ref); err != nil {
				return
			}
			nodes = []*api.Node{n}
		} else {
			nodes = tx.Nodes()
		}
		for _, n := range nodes {
			if n.Endpoints.API == "" || (ref == "" && n.Status.State != api.NodeStateReady) {
				continue
			}
			out = append(out, volumeNode{id: n.ID, hostname: n.Description.Hostname, api: n.Endpoints.API})
		}
	})
	if err == nil && ref != "" && len(out) == 0 {
		err = badRequest("node %s has no API address yet", ref)
	}
	slices.SortFunc(out, func(a, b volumeNode) int { return strings.Compare(a.hostname, b.hostname) })
	return out, err
}

// nodeCall calls a node's API and decodes its JSON answer into out (nil:
// none expected); a non-2xx answer is an error carrying the node's message
// and status code.
func (s *Server) nodeCall(ctx context.Context, method string, n volumeNode, path string, out any) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, nodeCallTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, "https://"+n.api+path, nil)
	if err != nil {
		return 0, err
	}
	resp, err := (&http.Client{Transport: s.fwd.tr}).Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil {
		return resp.StatusCode, err
	}
	if resp.StatusCode/100 != 2 {
		var e api.Error
		if json.Unmarshal(body, &e) == nil && e.Message != "" {
			return resp.StatusCode, fmt.Errorf("%s", e.Message)
		}
		return resp.StatusCode, fmt.Errorf("node answered %s", resp.Status)
	}
	if out != nil {
		return resp.StatusCode, json.Unmarshal(body, out)
	}
	return resp.StatusCode, nil
}

// collectVolumes asks every node in nodes for its volumes at once.
func (s *Server) collectVolumes(ctx context.Context, nodes []volumeNode) api.VolumeList {
	var mu sync.Mutex
	var wg sync.WaitGroup
	list := api.VolumeList{Volumes: []api.Volume{}}
	for _, n := range nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var vols []api.Volume
			_, err := s.nodeCall(ctx, http.MethodGet, n, "/v1/node/volumes", &vols)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				if list.Unreachable == nil {
					list.Unreachable = map[string]string{}
				}
				list.Unreachable[n.hostname] = err.Error()
				return
			}
			for _, v := range vols {
				v.NodeID, v.Hostname = n.id, n.hostname
				list.Volumes = append(list.Volumes, v)
			}
		}()
	}
	wg.Wait()
	slices.SortFunc(list.Volumes, func(a, b api.Volume) int {
		if c := strings.Compare(a.Name, b.Name); c != 0 {
			return c
		}
		return strings.Compare(a.Hostname, b.Hostname)
	})
	return list
}

func (s *Server) listVolumes(w http.ResponseWriter, r *http.Request) {
	nodes, err := s.volumeNodes(r)
	if err != nil {
		writeStoreError(w, "volume ls", err)
		return
	}
	writeJSON(w, http.StatusOK, s.collectVolumes(r.Context(), nodes))
}

// removeVolume removes a volume from the node named, or from every node
// that has it. Nothing is removed when a task uses it on any of those
// nodes, or when a node that may hold it does not answer (409, 503).
func (s *Server) removeVolume(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	if err := api.ValidVolumeName(name); err != nil {
		writeError(w, http.StatusBadRequest, "%v", err)
		return
	}
	nodes, err := s.volumeNodes(r)
	if err != nil {
		writeStoreError(w, "volume rm", err)
		return
	}
	list := s.collectVolumes(r.Context(), nodes)
	if len(list.Unreachable) > 0 {
		var names []string
		for h, e := range list.Unreachable {
			names = append(names, h+": "+e)
		}
		slices.Sort(names)
		writeError(w, http.StatusServiceUnavailable, "volume %s: nothing removed: nodes did not answer (%s)", name, strings.Join(names, "; "))
		return
	}
	var holders []api.Volume
	for _, v := range list.Volumes {
		if v.Name != name {
			continue
		}
		if len(v.UsedBy) > 0 {
			writeError(w, http.StatusConflict, "volume %s is in use on node %s by task(s) %s: nothing removed", name, v.Hostname, strings.Join(v.UsedBy, ", "))
			return
		}
		holders = append(holders, v)
	}
	if len(holders) == 0 {
		where := "any node"
		if ref := r.URL.Query().Get("node"); ref != "" {
			where = "node " + ref
		}
		writeError(w, http.StatusNotFound, "no volume %s on %s", name, where)
		return
	}
	out := api.VolumeRemoval{Removed: []api.Volume{}}
	for _, v := range holders {
		n := volumeNode{id: v.NodeID, hostname: v.Hostname}
		for _, vn := range nodes {
			if vn.id == v.NodeID {
				n = vn
			}
		}
		code, err := s.nodeCall(r.Context(), http.MethodDelete, n, "/v1/node/volumes/"+url.PathEscape(name), nil)
		if err != nil {
			if code == 0 || code/100 == 5 {
				code = http.StatusServiceUnavailable
			}
			writeError(w, code, "volume %s on node %s: %v (removed from %d node(s) before it)", name, v.Hostname, err, len(out.Removed))
			return
		}
		out.Removed = append(out.Removed, v)
	}
	writeJSON(w, http.StatusOK, out)
}
