package node

import (
	"log/slog"
	"time"

	"github.com/shoal-dev/shoal/agent"
	"github.com/shoal-dev/shoal/api"
)

// Mode says how the process came to be started.
type Mode int

const (
	// ModeResume only resumes an existing data directory.
	ModeResume Mode = iota
	// ModeInit creates a new cluster unless the data directory already has one.
	ModeInit
	// ModeJoin joins an existing cluster unless the data directory already has state.
	ModeJoin
)

// Config is everything the daemon needs to start. Empty ports take
// Swarm's defaults (2377 API, 2378 raft, 7946 gossip).
type Config struct {
	Mode    Mode
	DataDir string
	// AdvertiseAddr is the IP other nodes reach this node on.
	AdvertiseAddr string
	// ListenIP is the IP the API, raft and gossip listen on; empty means all.
	ListenIP   string
	APIPort    int
	RaftPort   int
	GossipPort int
	// MetricsAddr is host:port of the plain-HTTP /metrics listener; empty disables it.
	MetricsAddr string
	// ContainerdAddress is the containerd socket to use.
	ContainerdAddress string
	// InsecureRegistries are registries (HOST:PORT) pulled from over plain HTTP.
	InsecureRegistries []string
	// JoinToken and JoinAddr are used by ModeJoin.
	JoinToken string
	JoinAddr  string
	// JoinBurst and JoinRate limit joins per source address and per token
	// on this node while it is a manager; JoinRate 0 disables the limit.
	JoinBurst int
	JoinRate  float64
	// AutoLock starts a new cluster with autolock: each manager's raft key
	// file is wrapped with an unlock key (shoal unlock-key).
	AutoLock bool
	// RaftHeartbeat and RaftElection are this manager's raft timeouts
	// (zero: manager/raft's defaults).
	RaftHeartbeat, RaftElection time.Duration
	// Dispatcher is the failure detection settings a new cluster starts with.
	Dispatcher api.DispatcherConfig
	// Limits bound the task starts and image pulls of this node's agent;
	// zero fields take the agent's defaults. They are not kept in the
	// data directory: each start gives them or takes the defaults.
	Limits agent.Limits
	// Hostname overrides os.Hostname, so test hosts can tell themselves apart.
	Hostname string
	// Ready, if set, is called once the node is serving.
	Ready  func(info ReadyInfo)
	Logger *slog.Logger
	// ShutdownTimeout bounds a graceful stop.
	ShutdownTimeout time.Duration
}

// ReadyInfo is what the CLI prints when the daemon is up.
type ReadyInfo struct {
	NodeID     string
	ClusterID  string
	Role       string
	Resumed    bool
	AutoLock   bool
	APIAddr    string
	SocketPath string
}
