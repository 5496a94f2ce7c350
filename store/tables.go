package store

import "github.com/shoal-dev/shoal/api"

// Kind names a table; it is the memdb table name and appears in change
// sets, snapshots and events.
type Kind string

const (
	KindNode    Kind = "node"
	KindCluster Kind = "cluster"
	KindService Kind = "service"
	KindTask    Kind = "task"
	KindNetwork Kind = "network"
	KindSecret  Kind = "secret"
	KindConfig  Kind = "config"
)

// To add a kind: a table value below, an entry in tables (append only: the
// order is the order of operations in change sets and of snapshot records),
// and one-line accessors on Tx (plus ReadTx for the read side).

var nodes = &table[api.Node]{
	clone:   (*api.Node).Clone,
	kind:    KindNode,
	id:      func(n *api.Node) string { return n.ID },
	meta:    func(n *api.Node) *api.Meta { return &n.Meta },
	indexes: map[string]func(*api.Node) string{"hostname": func(n *api.Node) string { return n.Description.Hostname }},
}

var clusters = &table[api.Cluster]{
	clone:     (*api.Cluster).Clone,
	kind:      KindCluster,
	id:        func(c *api.Cluster) string { return c.ID },
	meta:      func(c *api.Cluster) *api.Meta { return &c.Meta },
	singleton: true,
}

var services = &table[api.Service]{
	clone:   (*api.Service).Clone,
	kind:    KindService,
	id:      func(s *api.Service) string { return s.ID },
	meta:    func(s *api.Service) *api.Meta { return &s.Meta },
	indexes: map[string]func(*api.Service) string{"name": func(s *api.Service) string { return s.Spec.Name }},
}

var tasks = &table[api.Task]{
	clone: (*api.Task).Clone,
	kind:  KindTask,
	id:    func(t *api.Task) string { return t.ID },
	meta:  func(t *api.Task) *api.Meta { return &t.Meta },
	indexes: map[string]func(*api.Task) string{
		"service": func(t *api.Task) string { return t.ServiceID },
		"node":    func(t *api.Task) string { return t.NodeID },
		// pending: the scheduler's work, found without copying every task
		// (an idle pass over 10k tasks cloned them all, every second).
		"pending": func(t *api.Task) string {
			if t.Status.State == api.TaskPending && t.DesiredState == api.TaskRunning {
				return "pending"
			}
			return ""
		},
	},
}

var networks = &table[api.Network]{
	clone:   (*api.Network).Clone,
	kind:    KindNetwork,
	id:      func(n *api.Network) string { return n.ID },
	meta:    func(n *api.Network) *api.Meta { return &n.Meta },
	indexes: map[string]func(*api.Network) string{"name": func(n *api.Network) string { return n.Spec.Name }},
}

var secrets = &table[api.Secret]{
	clone:   (*api.Secret).Clone,
	kind:    KindSecret,
	id:      func(s *api.Secret) string { return s.ID },
	meta:    func(s *api.Secret) *api.Meta { return &s.Meta },
	indexes: map[string]func(*api.Secret) string{"name": func(s *api.Secret) string { return s.Spec.Name }},
}

var configs = &table[api.Config]{
	clone:   (*api.Config).Clone,
	kind:    KindConfig,
	id:      func(c *api.Config) string { return c.ID },
	meta:    func(c *api.Config) *api.Meta { return &c.Meta },
	indexes: map[string]func(*api.Config) string{"name": func(c *api.Config) string { return c.Spec.Name }},
}

// tables is the schema, in a fixed order.
var tables = []anyTable{nodes, clusters, services, tasks, networks, secrets, configs}

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
	// FindNodes resolves ref like docker: the exact ID, else the nodes with
	// that hostname, else the nodes whose ID starts with ref. More than one
	// result is ambiguous, none is not found.
	FindNodes(ref string) []*api.Node
	// Cluster returns the cluster object, or nil before init.
	Cluster() *api.Cluster
	// Service returns the service with that ID, or nil.
	Service(id string) *api.Service
	// Services returns all services sorted by ID.
	Services() []*api.Service
	// FindServices resolves ref like FindNodes, by ID, ID prefix or name.
	FindServices(ref string) []*api.Service
	// Task returns the task with that ID, or nil.
	Task(id string) *api.Task
	// Tasks returns all tasks sorted by ID.
	Tasks() []*api.Task
	// TasksOfService returns a service's tasks sorted by ID.
	TasksOfService(serviceID string) []*api.Task
	// TasksOnNode returns the tasks assigned to a node sorted by ID.
	TasksOnNode(nodeID string) []*api.Task
	// PendingTasks returns the tasks pending and desired running (the
	// scheduler's work) sorted by ID.
	PendingTasks() []*api.Task
	// Network returns the network with that ID, or nil.
	Network(id string) *api.Network
	// Networks returns all networks sorted by ID.
	Networks() []*api.Network
	// FindNetworks resolves ref like FindNodes, by ID, ID prefix or name.
	FindNetworks(ref string) []*api.Network
	// Secret returns the secret with that ID, or nil.
	Secret(id string) *api.Secret
	// Secrets returns all secrets sorted by ID.
	Secrets() []*api.Secret
	// FindSecrets resolves ref like FindNodes, by ID, ID prefix or name.
	FindSecrets(ref string) []*api.Secret
	// Config returns the config with that ID, or nil.
	Config(id string) *api.Config
	// Configs returns all configs sorted by ID.
	Configs() []*api.Config
	// FindConfigs resolves ref like FindNodes, by ID, ID prefix or name.
	FindConfigs(ref string) []*api.Config
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

func (tx *Tx) Service(id string) *api.Service         { return services.get(tx, id) }
func (tx *Tx) Services() []*api.Service               { return services.list(tx) }
func (tx *Tx) FindServices(ref string) []*api.Service { return services.find(tx, ref, "name") }
func (tx *Tx) Task(id string) *api.Task               { return tasks.get(tx, id) }
func (tx *Tx) Tasks() []*api.Task                     { return tasks.list(tx) }
func (tx *Tx) TasksOfService(serviceID string) []*api.Task {
	return tasks.where(tx, "service", serviceID)
}
func (tx *Tx) TasksOnNode(nodeID string) []*api.Task { return tasks.where(tx, "node", nodeID) }
func (tx *Tx) PendingTasks() []*api.Task             { return tasks.where(tx, "pending", "pending") }

// PutService creates (Meta.Version 0) or replaces (Meta.Version as read) a service.
func (tx *Tx) PutService(s *api.Service) error { return services.put(tx, s) }

// DeleteService deletes a service; ErrNotFound if tx does not see it.
func (tx *Tx) DeleteService(id string) error { return services.del(tx, id) }

// PutTask creates (Meta.Version 0) or replaces (Meta.Version as read) a task.
func (tx *Tx) PutTask(t *api.Task) error { return tasks.put(tx, t) }

// DeleteTask deletes a task; ErrNotFound if tx does not see it.
func (tx *Tx) DeleteTask(id string) error { return tasks.del(tx, id) }

func (tx *Tx) Network(id string) *api.Network         { return networks.get(tx, id) }
func (tx *Tx) Networks() []*api.Network               { return networks.list(tx) }
func (tx *Tx) FindNetworks(ref string) []*api.Network { return networks.find(tx, ref, "name") }

// PutNetwork creates (Meta.Version 0) or replaces (Meta.Version as read) a network.
func (tx *Tx) PutNetwork(n *api.Network) error { return networks.put(tx, n) }

// DeleteNetwork deletes a network; ErrNotFound if tx does not see it.
func (tx *Tx) DeleteNetwork(id string) error { return networks.del(tx, id) }

func (tx *Tx) Secret(id string) *api.Secret         { return secrets.get(tx, id) }
func (tx *Tx) Secrets() []*api.Secret               { return secrets.list(tx) }
func (tx *Tx) FindSecrets(ref string) []*api.Secret { return secrets.find(tx, ref, "name") }

// PutSecret creates (Meta.Version 0) or replaces (Meta.Version as read) a secret.
func (tx *Tx) PutSecret(s *api.Secret) error { return secrets.put(tx, s) }

// DeleteSecret deletes a secret; ErrNotFound if tx does not see it.
func (tx *Tx) DeleteSecret(id string) error { return secrets.del(tx, id) }

func (tx *Tx) Config(id string) *api.Config         { return configs.get(tx, id) }
func (tx *Tx) Configs() []*api.Config               { return configs.list(tx) }
func (tx *Tx) FindConfigs(ref string) []*api.Config { return configs.find(tx, ref, "name") }

// PutConfig creates (Meta.Version 0) or replaces (Meta.Version as read) a config.
func (tx *Tx) PutConfig(c *api.Config) error { return configs.put(tx, c) }

// DeleteConfig deletes a config; ErrNotFound if tx does not see it.
func (tx *Tx) DeleteConfig(id string) error { return configs.del(tx, id) }
