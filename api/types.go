package api

import "time"

// NodeRole is what a node does in the cluster.
type NodeRole string

const (
	RoleManager NodeRole = "manager"
	RoleWorker  NodeRole = "worker"
)

// Availability says whether the scheduler may place tasks on a node.
type Availability string

const (
	AvailabilityActive Availability = "active"
	AvailabilityPause  Availability = "pause"
	AvailabilityDrain  Availability = "drain"
)

// NodeState is the observed state of a node.
type NodeState string

const (
	NodeStateUnknown NodeState = "unknown"
	NodeStateReady   NodeState = "ready"
	NodeStateDown    NodeState = "down"
)

// Reachability of a manager as seen by the answering manager.
const (
	ManagerLeader      = "Leader"
	ManagerReachable   = "Reachable"
	ManagerUnreachable = "Unreachable"
)

// Meta is kept by the store on every object. Version is the raft index of
// the last write and is used for optimistic concurrency.
type Meta struct {
	Version   uint64    `json:"version"`
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
}

// Node is a machine in the cluster.
type Node struct {
	ID          string          `json:"id"`
	Meta        Meta            `json:"meta"`
	Spec        NodeSpec        `json:"spec"`
	Status      NodeStatus      `json:"status"`
	Description NodeDescription `json:"description"`
	Endpoints   Endpoints       `json:"endpoints"`
	// IngressAddr is the node's own address (a CIDR) on the ingress network,
	// given by the allocator, so that every node carries the routing mesh.
	IngressAddr string `json:"ingress_addr,omitempty"`
	// FirstHeartbeatAt is when the node first reported; a node that never
	// does is removed after a while (admission's reaper).
	FirstHeartbeatAt time.Time `json:"first_heartbeat_at,omitzero"`
	// Certs are the unexpired certificates signed for the node, so that
	// they can be revoked when it is demoted or removed.
	Certs []IssuedCert `json:"certs,omitempty"`
}

// IssuedCert is a node certificate the cluster CA signed.
type IssuedCert struct {
	Serial   string    `json:"serial"`
	Role     NodeRole  `json:"role"`
	NotAfter time.Time `json:"not_after"`
}

// RevokedCert is a certificate on the deny list: it still verifies, but
// manager-only ports refuse it until it expires.
type RevokedCert struct {
	Serial   string    `json:"serial"`
	NodeID   string    `json:"node_id"`
	NotAfter time.Time `json:"not_after"`
}

// NodeSpec is what operators set on a node.
type NodeSpec struct {
	Role         NodeRole          `json:"role"`
	Availability Availability      `json:"availability"`
	Labels       map[string]string `json:"labels,omitempty"`
}

// NodeStatus is what the leader observes of a node.
type NodeStatus struct {
	State   NodeState `json:"state"`
	Message string    `json:"message,omitempty"`
	Addr    string    `json:"addr"`
}

// NodeDescription is what a node reports about itself.
type NodeDescription struct {
	Hostname    string `json:"hostname"`
	OS          string `json:"os"`
	Arch        string `json:"arch"`
	CPUs        int    `json:"cpus"`
	MemoryBytes int64  `json:"memory_bytes"`
	Engine      Engine `json:"engine"`
}

// Engine describes the container runtime a node talks to.
type Engine struct {
	Name      string `json:"name"`
	Version   string `json:"version,omitempty"`
	Available bool   `json:"available"`
	Error     string `json:"error,omitempty"`
}

// Endpoints are the host:port addresses a node serves on.
type Endpoints struct {
	API     string `json:"api"`
	Raft    string `json:"raft,omitempty"`
	Gossip  string `json:"gossip"`
	Metrics string `json:"metrics,omitempty"`
}

// Cluster is the single cluster-wide object.
type Cluster struct {
	ID        string `json:"id"`
	Meta      Meta   `json:"meta"`
	CACertPEM string `json:"ca_cert_pem"`
	// CAKeyPEM lets any manager sign node certificates.
	CAKeyPEM        string `json:"ca_key_pem"`
	WorkerToken     string `json:"worker_token"`
	ManagerToken    string `json:"manager_token"`
	GossipKey       []byte `json:"gossip_key"`
	CreatedByNodeID string `json:"created_by_node_id"`
	// RevokedCerts are the certificates of demoted and removed nodes.
	RevokedCerts []RevokedCert `json:"revoked_certs,omitempty"`
	// Dispatcher holds the heartbeat settings; zero fields take the defaults.
	Dispatcher DispatcherConfig `json:"dispatcher,omitzero"`
	// AutoLock says every manager's data-encryption key is wrapped with
	// UnlockKey, so a restarted manager waits for shoal unlock.
	AutoLock  bool   `json:"autolock,omitempty"`
	UnlockKey string `json:"unlock_key,omitempty"`
}

// DispatcherConfig tunes failure detection.
type DispatcherConfig struct {
	// HeartbeatPeriod is how often nodes beat (default 1s).
	HeartbeatPeriod time.Duration `json:"heartbeat_period,omitempty"`
	// NodeDownGrace is how long a node that missed 3 beats but that gossip
	// still reaches stays unknown, keeping its tasks, before it is down
	// (default 15s).
	NodeDownGrace time.Duration `json:"node_down_grace,omitempty"`
}

// NodeView is a node as the API shows it: the stored node plus the
// manager status that the answering manager derives from raft and gossip.
type NodeView struct {
	Node
	// ManagerStatus is Leader, Reachable or Unreachable for managers, empty for workers.
	ManagerStatus string `json:"manager_status,omitempty"`
	// RaftMember says whether a manager is in the raft configuration.
	RaftMember bool `json:"raft_member,omitempty"`
}

// NodeUpdate changes a node's spec; nil or empty fields are left alone.
type NodeUpdate struct {
	Availability Availability      `json:"availability,omitempty"`
	LabelAdd     map[string]string `json:"label_add,omitempty"`
	LabelRm      []string          `json:"label_rm,omitempty"`
}

// JoinTokens are the current tokens.
type JoinTokens struct {
	Worker  string `json:"worker"`
	Manager string `json:"manager"`
}

// JoinRequest is sent by a node joining with a token. The manager pins
// nothing here: the joining node has already pinned the CA by its digest.
type JoinRequest struct {
	Token       string          `json:"token"`
	CSRPEM      string          `json:"csr_pem"`
	Addr        string          `json:"addr"`
	Endpoints   Endpoints       `json:"endpoints"`
	Description NodeDescription `json:"description"`
}

// JoinResponse hands a new node its identity.
type JoinResponse struct {
	NodeID    string      `json:"node_id"`
	Role      NodeRole    `json:"role"`
	ClusterID string      `json:"cluster_id"`
	CertPEM   string      `json:"cert_pem"`
	CACertPEM string      `json:"ca_cert_pem"`
	GossipKey []byte      `json:"gossip_key"`
	Managers  []Endpoints `json:"managers"`
}

// RaftJoinRequest asks the leader to add the calling manager as a voter.
type RaftJoinRequest struct {
	RaftAddr string `json:"raft_addr"`
}

// Heartbeat is sent by every node's agent to the leader. An agent sends
// it when it differs from the last one a manager took, and an empty beat
// (no body) otherwise.
type Heartbeat struct {
	Description NodeDescription `json:"description"`
	Endpoints   Endpoints       `json:"endpoints"`
	Addr        string          `json:"addr"`
}

// HeartbeatResponse tells a node what the cluster wants of it.
type HeartbeatResponse struct {
	Role         NodeRole     `json:"role"`
	Availability Availability `json:"availability"`
	Managers     []Endpoints  `json:"managers"`
	LeaderID     string       `json:"leader_id"`
	// Period is how often the node should beat.
	Period time.Duration `json:"period"`
	// Removed is set when the node is no longer part of the cluster.
	Removed bool `json:"removed,omitempty"`
	// Describe asks for the node's full Heartbeat in its next beat: the
	// manager holds no description of it.
	Describe bool `json:"describe,omitempty"`
}

// CertRequest renews the caller's certificate for its current role.
type CertRequest struct {
	CSRPEM string `json:"csr_pem"`
}

// CertResponse carries a signed certificate.
type CertResponse struct {
	CertPEM string   `json:"cert_pem"`
	Role    NodeRole `json:"role"`
}

// Info describes the local node, as served on its unix socket.
type Info struct {
	NodeID    string    `json:"node_id"`
	ClusterID string    `json:"cluster_id"`
	Role      NodeRole  `json:"role"`
	Addr      string    `json:"addr"`
	Endpoints Endpoints `json:"endpoints"`
	IsLeader  bool      `json:"is_leader"`
	LeaderID  string    `json:"leader_id,omitempty"`
	Engine    Engine    `json:"engine"`
}

// Error is the body of every non-2xx answer.
type Error struct {
	Message string `json:"message"`
}
