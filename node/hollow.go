package node

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"sync"

	"github.com/shoal-dev/shoal/agent"
	"github.com/shoal-dev/shoal/agent/exec"
	"github.com/shoal-dev/shoal/api"
	"github.com/shoal-dev/shoal/clock"
	"github.com/shoal-dev/shoal/manager/ca"
)

// HollowConfig describes one simulated worker.
type HollowConfig struct {
	// Hostname names the node in the cluster; it should be unique.
	Hostname string
	// Addr is the IP the node advertises (many hollow nodes may share one).
	Addr string
	// JoinAddr is a manager's API address; JoinToken a worker token.
	JoinAddr  string
	JoinToken string
	// Executor runs the node's tasks (simexec in the simulator).
	Executor exec.Executor
	// Engine is reported in heartbeats as the node's container engine.
	Engine api.Engine
	Clock  clock.Clock
	Logger *slog.Logger
}

// Hollow is a worker without a process of its own: it joins like `shoal
// join` does (real token, CSR, certificate, mTLS) and runs the real agent
// session (heartbeats, assignments, task status) over its executor, but
// keeps its identity in memory and runs no gossip, no API listener and no
// overlay. Many of them share one process (cmd/shoal-sim).
type Hollow struct {
	cfg HollowConfig
	id  string
	log *slog.Logger

	pool *x509.CertPool
	cert *tls.Certificate

	mu       sync.Mutex
	managers []api.Endpoints
	clients  map[string]*api.Client // one per manager, reused
	cancel   context.CancelFunc     // set while the agent runs
	done     chan struct{}          // closed when the running agent returns
	removed  bool
}

// NewHollow joins the cluster as a new worker; Start runs its agent.
func NewHollow(ctx context.Context, cfg HollowConfig) (*Hollow, error) {
	if net.ParseIP(cfg.Addr) == nil {
		return nil, fmt.Errorf("hollow node %s: advertise address %q is not an IP address", cfg.Hostname, cfg.Addr)
	}
	if cfg.Executor == nil {
		return nil, fmt.Errorf("hollow node %s: an executor is required", cfg.Hostname)
	}
	if cfg.Clock == nil {
		cfg.Clock = clock.Real{}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	resp, keyPEM, err := requestJoin(ctx, cfg.Logger, cfg.JoinAddr, cfg.JoinToken, api.JoinRequest{
		Addr: cfg.Addr,
		// Nothing listens on the gossip port: hollow nodes are not members,
		// so managers judge them by heartbeats alone.
		Endpoints:   api.Endpoints{Gossip: net.JoinHostPort(cfg.Addr, strconv.Itoa(DefaultGossipPort))},
		Description: api.NodeDescription{Hostname: cfg.Hostname},
	})
	if err != nil {
		return nil, err
	}
	pair, err := tls.X509KeyPair([]byte(resp.CertPEM), keyPEM)
	if err != nil {
		return nil, fmt.Errorf("hollow node %s: certificate from the join: %w", cfg.Hostname, err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM([]byte(resp.CACertPEM)) {
		return nil, fmt.Errorf("hollow node %s: the join answer holds no CA certificate", cfg.Hostname)
	}
	h := &Hollow{
		cfg: cfg, id: resp.NodeID, pool: pool, cert: &pair,
		managers: resp.Managers, clients: map[string]*api.Client{},
	}
	h.log = cfg.Logger.With("node", resp.NodeID, "hostname", cfg.Hostname)
	return h, nil
}

// ID is the node ID the cluster gave this node.
func (h *Hollow) ID() string { return h.id }

// Hostname is the node's name in the cluster.
func (h *Hollow) Hostname() string { return h.cfg.Hostname }

// Executor runs this node's tasks.
func (h *Hollow) Executor() exec.Executor { return h.cfg.Executor }

// Removed says whether the cluster answered that this node was removed.
func (h *Hollow) Removed() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.removed
}

// Running says whether the agent runs (started, not stopped).
func (h *Hollow) Running() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.cancel != nil
}

// Start runs the agent until Stop or until ctx ends; a running node is left
// as it is. A restarted agent adopts the tasks its executor still runs, as
// a real agent restart does.
func (h *Hollow) Start(ctx context.Context) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.cancel != nil {
		return
	}
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	h.cancel, h.done = cancel, done
	a := agent.New(agent.Config{
		Hostname:    h.cfg.Hostname,
		Addr:        h.cfg.Addr,
		Endpoints:   api.Endpoints{Gossip: net.JoinHostPort(h.cfg.Addr, strconv.Itoa(DefaultGossipPort))},
		Engine:      fixedEngine(h.cfg.Engine),
		NewExecutor: func() (exec.Executor, error) { return h.cfg.Executor, nil },
		Dial:        h.dial,
		Managers:    h.currentManagers,
		OnResponse:  h.onResponse,
		Clock:       h.cfg.Clock,
		Logger:      h.log,
	})
	go func() {
		defer close(done)
		a.Run(ctx)
	}()
}

// Stop ends the agent and waits for it: the node stops beating, polling
// and reporting at once, without a word to the managers, as a node that
// loses power or its network. Its executor keeps its tasks.
func (h *Hollow) Stop() {
	h.mu.Lock()
	cancel, done := h.cancel, h.done
	h.cancel, h.done = nil, nil
	clients := h.clients
	h.clients = map[string]*api.Client{}
	h.mu.Unlock()
	if cancel == nil {
		return
	}
	cancel()
	<-done
	for _, c := range clients {
		c.Close()
	}
}

func (h *Hollow) onResponse(r api.HeartbeatResponse) {
	h.mu.Lock()
	if len(r.Managers) > 0 {
		h.managers = r.Managers
	}
	removed := r.Removed && !h.removed
	h.removed = h.removed || r.Removed
	cancel := h.cancel
	h.mu.Unlock()
	if removed {
		// The agent calls us from its own loop: cancel, do not wait.
		h.log.Warn("removed from the cluster; stopping")
		if cancel != nil {
			cancel()
		}
	}
}

func (h *Hollow) currentManagers() []api.Endpoints {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]api.Endpoints(nil), h.managers...)
}

// dial keeps one client per manager so its connections are reused: a
// client per call would cost a TLS handshake and an idle connection each.
func (h *Hollow) dial(addr string) (*api.Client, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if c, ok := h.clients[addr]; ok {
		return c, nil
	}
	c, err := api.NewClient(addr, ca.ClientTLS(h.pool, h.cert, string(api.RoleManager)))
	if err != nil {
		return nil, err
	}
	h.clients[addr] = c
	return c, nil
}

// fixedEngine reports the same engine at every probe.
type fixedEngine api.Engine

func (e fixedEngine) Probe(context.Context) api.Engine { return api.Engine(e) }
