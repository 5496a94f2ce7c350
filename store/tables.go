package store

import "github.com/shoal-dev/shoal/api"

// Kind names a table; it is the memdb table name and appears in change
// sets, snapshots and events.
type Kind string

const (
	KindNode    Kind = "node"
	KindCluster Kind = "cluster"
)

// To add a kind: a table value below, an entry in tables (append only: the
// order is the order of operations in change sets and of snapshot records),
// and one-line accessors on Tx (plus ReadTx for the read side).

var nodes = &table[api.Node]{
	kind:    KindNode,
	id:      func(n *api.Node) string { return n.ID },
	meta:    func(n *api.Node) *api.Meta { return &n.Meta },
	indexes: map[string]func(*api.Node) string{"hostname": func(n *api.Node) string { return n.Description.Hostname }},
}

var clusters = &table[api.Cluster]{
	kind:      KindCluster,
	id:        func(c *api.Cluster) string { return c.ID },
	meta:      func(c *api.Cluster) *api.Meta { return &c.Meta },
	singleton: true,
}

// tables is the schema, in a fixed order.
var tables = []anyTable{nodes, clusters}

var tableByKind = func() map[Kind]anyTable {
	m := make(map[Kind]anyTable, len(tables))
	for _, t := range tables {
		m[t.Kind()] = t
	}
	return m
}()

// ReadTx is a consistent read view of the store. Objects it returns are
// copies: callers may change them.
type ReadTx interface {
	// Node returns the node with that ID, or nil.
	Node(id string) *api.Node
	// Nodes returns all nodes sorted by ID.
	Nodes() []*api.Node
	// FindNodes resolves ref like docker: the exact ID, else the only node
	// whose ID starts with ref, else the nodes with that hostname, else all
	// nodes whose ID starts with ref. More than one result is ambiguous,
	// none is not found.
	FindNodes(ref string) []*api.Node
	// Cluster returns the cluster object, or nil before init.
	Cluster() *api.Cluster
}

func (tx *Tx) Node(id string) *api.Node         { return nodes.get(tx, id) }
func (tx *Tx) Nodes() []*api.Node               { return nodes.list(tx) }
func (tx *Tx) FindNodes(ref string) []*api.Node { return nodes.find(tx, ref, "hostname") }
func (tx *Tx) Cluster() *api.Cluster            { return clusters.first(tx) }

// PutNode creates (Meta.Version 0) or replaces (Meta.Version as read) a node.
func (tx *Tx) PutNode(n *api.Node) error { return nodes.put(tx, n) }

// DeleteNode deletes a node; ErrNotFound if tx does not see it.
func (tx *Tx) DeleteNode(id string) error { return nodes.del(tx, id) }

// PutCluster creates (Meta.Version 0) or replaces (Meta.Version as read) the cluster.
func (tx *Tx) PutCluster(c *api.Cluster) error { return clusters.put(tx, c) }
