package api

import (
	"context"
	"net/http"
	"net/url"
)

// Volume is a named local volume on one node.
type Volume struct {
	Name string `json:"name"`
	// NodeID and Hostname say which node holds it (set by the managers).
	NodeID   string `json:"node_id,omitempty"`
	Hostname string `json:"hostname,omitempty"`
	// Mountpoint is its directory on the node.
	Mountpoint string `json:"mountpoint"`
	// UsedBy are the IDs of the tasks on the node whose containers mount it
	// and have not exited.
	UsedBy []string `json:"used_by,omitempty"`
}

// VolumeList is the volumes of the nodes asked, and the nodes that did not
// answer, each with why.
type VolumeList struct {
	Volumes []Volume `json:"volumes"`
	// Unreachable maps a node's hostname to the error asking it.
	Unreachable map[string]string `json:"unreachable,omitempty"`
}

// VolumeRemoval says which nodes a volume was removed from.
type VolumeRemoval struct {
	Removed []Volume `json:"removed"`
}

// Volumes lists the local volumes of node (ID or hostname), or of every
// ready node when node is "".
func (c *Client) Volumes(ctx context.Context, node string) (VolumeList, error) {
	var out VolumeList
	q := ""
	if node != "" {
		q = "?node=" + url.QueryEscape(node)
	}
	err := c.do(ctx, http.MethodGet, "/v1/volumes"+q, nil, &out)
	return out, err
}

// RemoveVolume removes volume name from node, or from every node that has
// it when node is "". Nothing is removed if a task uses it on any of them.
func (c *Client) RemoveVolume(ctx context.Context, name, node string) (VolumeRemoval, error) {
	var out VolumeRemoval
	q := ""
	if node != "" {
		q = "?node=" + url.QueryEscape(node)
	}
	err := c.do(ctx, http.MethodDelete, "/v1/volumes/"+url.PathEscape(name)+q, nil, &out)
	return out, err
}
