package node

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	dto "github.com/prometheus/client_model/go"

	"github.com/shoal-dev/shoal/agent"
	"github.com/shoal-dev/shoal/agent/exec"
	containerdexec "github.com/shoal-dev/shoal/agent/exec/containerd"
	"github.com/shoal-dev/shoal/agent/volume"
	"github.com/shoal-dev/shoal/api"
	"github.com/shoal-dev/shoal/clock"
	"github.com/shoal-dev/shoal/internal/httpserve"
	"github.com/shoal-dev/shoal/manager/ca"
	"github.com/shoal-dev/shoal/node/gossip"
)

// Default ports, as Swarm's.
const (
	DefaultAPIPort    = api.DefaultAPIPort
	DefaultRaftPort   = api.DefaultRaftPort
	DefaultGossipPort = api.DefaultGossipPort
)

// errLeft ends Run when the node has left the cluster on request.
var errLeft = errors.New("node: left the cluster")

// Node is one running shoal process.
type Node struct {
	cfg   Config
	log   *slog.Logger
	clock clock.Clock
	paths paths

	reg     *prometheus.Registry
	gossip  *gossip.Gossip
	agent   *agent.Agent
	volumes *volume.Store

	mu       sync.Mutex
	st       *state
	pool     *x509.CertPool
	cert     *tls.Certificate
	mgr      *runningManager
	leaderID string
	// dek seals this manager's raft data; wrappedWith is the unlock key its
	// key file is wrapped with now ("" when plain). See keys.go.
	dek         []byte
	wrappedWith string
	// clients holds one client (one connection) per manager API address,
	// dropped when the certificate changes and closed when the node stops.
	clients map[string]*api.Client

	// events from the agent and the local API to the main loop.
	heartbeats chan api.HeartbeatResponse
	leave      chan leaveRequest
}

type leaveRequest struct {
	force bool
	done  chan error
	// answered is closed once the caller has its answer, so the process
	// does not exit (closing the socket) before the reply is written.
	answered chan struct{}
}

// Run starts the node described by cfg and serves until ctx ends or the
// node leaves the cluster.
func Run(ctx context.Context, cfg Config) error {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	if cfg.ShutdownTimeout == 0 {
		cfg.ShutdownTimeout = 10 * time.Second
	}
	if cfg.DataDir == "" {
		return errors.New("node: a data directory is required")
	}
	n := &Node{
		cfg:        cfg,
		log:        cfg.Logger,
		clock:      clock.Real{},
		paths:      paths{dir: cfg.DataDir},
		reg:        prometheus.NewRegistry(),
		heartbeats: make(chan api.HeartbeatResponse, 1),
		leave:      make(chan leaveRequest),
	}
	err := n.run(ctx)
	if errors.Is(err, errLeft) {
		return nil
	}
	return err
}

func (n *Node) run(ctx context.Context) error {
	if err := os.MkdirAll(n.cfg.DataDir, 0o700); err != nil {
		return fmt.Errorf("data directory: %w", err)
	}
	st, err := loadState(n.paths)
	if err != nil {
		return err
	}
	resumed := st != nil
	switch {
	case st != nil:
		if n.cfg.Mode != ModeResume {
			n.log.Info("data directory already holds a node: resuming it, not creating a new one", "dir", n.cfg.DataDir, "node", st.NodeID)
		}
		if n.cfg.Hostname != "" {
			st.Hostname = n.cfg.Hostname
		}
		if st.Hostname == "" {
			st.Hostname, _ = os.Hostname()
		}
		if n.cfg.AdvertiseAddr != "" && n.cfg.AdvertiseAddr != st.Addr {
			n.log.Info("advertise address changed", "was", st.Addr, "now", n.cfg.AdvertiseAddr)
			st.Addr = n.cfg.AdvertiseAddr
		}
	case n.cfg.Mode == ModeInit:
		if st, err = n.newCluster(); err != nil {
			return err
		}
	case n.cfg.Mode == ModeJoin:
		if st, err = n.join(ctx); err != nil {
			return err
		}
	default:
		return fmt.Errorf("no shoal node in %s: create a cluster with shoal init or join one with shoal join", n.cfg.DataDir)
	}
	n.settle(st)
	if err := saveState(n.paths, st); err != nil {
		return err
	}
	if err := n.loadIdentity(st); err != nil {
		return err
	}
	return n.serve(ctx, resumed)
}

// DefaultContainerdAddress is Debian's containerd socket.
const DefaultContainerdAddress = "/run/containerd/containerd.sock"

// settle merges the daemon settings: flags given now win, then those kept
// from earlier starts, then the defaults. The result is kept in cfg and st.
func (n *Node) settle(st *state) {
	pick := func(now, kept, def string) string {
		switch {
		case now != "":
			return now
		case kept != "":
			return kept
		}
		return def
	}
	st.MetricsAddr = pick(n.cfg.MetricsAddr, st.MetricsAddr, "")
	st.ContainerdAddress = pick(n.cfg.ContainerdAddress, st.ContainerdAddress, DefaultContainerdAddress)
	if len(n.cfg.InsecureRegistries) > 0 {
		st.InsecureRegistries = n.cfg.InsecureRegistries
	}
	n.cfg.MetricsAddr, n.cfg.ContainerdAddress, n.cfg.InsecureRegistries = st.MetricsAddr, st.ContainerdAddress, st.InsecureRegistries
}

func (n *Node) loadIdentity(st *state) error {
	pool, leaf, pair, err := loadCerts(n.paths)
	if err != nil {
		return err
	}
	id, err := ca.IdentityOf(leaf)
	if err != nil {
		return fmt.Errorf("node certificate: %w", err)
	}
	if id.NodeID != st.NodeID {
		return fmt.Errorf("node certificate names node %s but the state names %s", id.NodeID, st.NodeID)
	}
	n.mu.Lock()
	n.st, n.pool, n.cert = st, pool, &pair
	n.mu.Unlock()
	n.closeClients()
	return nil
}

func (n *Node) state() state {
	n.mu.Lock()
	defer n.mu.Unlock()
	return *n.st
}

func (n *Node) endpoints(st state) api.Endpoints {
	hp := func(port int) string { return net.JoinHostPort(st.Addr, strconv.Itoa(port)) }
	e := api.Endpoints{API: hp(st.APIPort), Raft: hp(st.RaftPort), Gossip: hp(st.GossipPort)}
	if n.cfg.MetricsAddr != "" {
		e.Metrics = n.cfg.MetricsAddr
		if host, port, err := net.SplitHostPort(n.cfg.MetricsAddr); err == nil && (host == "" || net.ParseIP(host).IsUnspecified()) {
			e.Metrics = net.JoinHostPort(st.Addr, port)
		}
	}
	return e
}

func (n *Node) listenAddr(port int) string {
	return net.JoinHostPort(n.state().ListenIP, strconv.Itoa(port))
}

// currentCert lets long-lived TLS configs pick up a renewed certificate.
func (n *Node) currentCert() *tls.Certificate {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.cert
}

func (n *Node) withCurrentCert(cfg *tls.Config) *tls.Config {
	cfg.Certificates = nil
	cfg.GetCertificate = func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return n.currentCert(), nil }
	cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return n.currentCert(), nil }
	return cfg
}

func (n *Node) clientTLS() *tls.Config {
	n.mu.Lock()
	pool := n.pool
	n.mu.Unlock()
	// Every call this makes goes to a manager: a certificate of another
	// role is not one, whatever the address list says.
	return n.withCurrentCert(ca.ClientTLS(pool, n.currentCert(), ca.RoleManager))
}

// dial returns the mTLS client for a manager's API address, the same one
// for every call so that they share its connection.
func (n *Node) dial(apiAddr string) (*api.Client, error) {
	n.mu.Lock()
	c := n.clients[apiAddr]
	n.mu.Unlock()
	if c != nil {
		return c, nil
	}
	c, err := api.NewClient(apiAddr, n.clientTLS())
	if err != nil {
		return nil, err
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if old := n.clients[apiAddr]; old != nil {
		c.Close()
		return old, nil
	}
	if n.clients == nil {
		n.clients = map[string]*api.Client{}
	}
	n.clients[apiAddr] = c
	return c, nil
}

// closeClients closes the manager connections; the next call dials anew.
// Managers know a caller by the certificate of its connection, so a new
// certificate (a promotion, a renewal) needs new connections.
func (n *Node) closeClients() {
	n.mu.Lock()
	cs := n.clients
	n.clients = nil
	n.mu.Unlock()
	for _, c := range cs {
		c.Close()
	}
}

func (n *Node) managers() []api.Endpoints {
	n.mu.Lock()
	defer n.mu.Unlock()
	return append([]api.Endpoints(nil), n.st.Managers...)
}

func (n *Node) serve(ctx context.Context, resumed bool) error {
	st := n.state()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	log := n.log.With("node", st.NodeID)
	n.log = log
	defer n.closeClients()

	if st.Role == api.RoleManager {
		if err := n.waitUnlock(ctx); err != nil {
			return err
		}
	}

	n.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	if n.cfg.MetricsAddr != "" {
		stopMetrics, err := n.serveMetrics()
		if err != nil {
			return err
		}
		defer stopMetrics()
	}

	g, err := gossip.Start(gossip.Config{
		NodeID:      st.NodeID,
		BindIP:      st.ListenIP,
		Port:        st.GossipPort,
		AdvertiseIP: st.Addr,
		Key:         st.GossipKey,
		Meta:        gossip.Meta{Role: string(st.Role), API: n.endpoints(st).API},
		Logger:      n.log,
		Registry:    n.reg,
	})
	if err != nil {
		return fmt.Errorf("start gossip: %w", err)
	}
	n.gossip = g
	defer g.Shutdown()

	vtep, err := netip.ParseAddr(st.Addr)
	if err != nil {
		return fmt.Errorf("advertise address %q: %w", st.Addr, err)
	}
	network, err := agent.NewNetwork(st.NodeID, vtep, n.endpoints(st), filepath.Join(n.paths.tasks(), "net"), n.log)
	if err != nil {
		return err
	}
	if n.volumes, err = volume.New(n.paths.volumes()); err != nil {
		return err
	}
	n.agent = agent.New(agent.Config{
		Network:   network,
		Hostname:  st.Hostname,
		Addr:      st.Addr,
		Endpoints: n.endpoints(st),
		Engine:    agent.Containerd{Address: n.cfg.ContainerdAddress},
		Limits:    n.cfg.Limits,
		NewExecutor: func() (exec.Executor, error) {
			return containerdexec.New(containerdexec.Config{
				Address:            n.cfg.ContainerdAddress,
				StateDir:           n.paths.tasks(),
				InsecureRegistries: n.cfg.InsecureRegistries,
				OnPull:             func(took time.Duration, err error) { n.agent.ObservePull(took, err) },
				Network:            network.Prepare,
				Files:              func(t *api.Task) ([]exec.File, error) { return n.agent.TaskFiles(t) },
				Volumes:            n.volumes,
				LogBinary:          logBinary(),
				Logger:             n.log,
			})
		},
		Dial:     n.dial,
		Managers: n.managers,
		OnResponse: func(r api.HeartbeatResponse) {
			select {
			case n.heartbeats <- r:
			default: // the main loop is busy; the next beat tells the same
			}
		},
		Clock:    n.clock,
		Logger:   n.log,
		Registry: n.reg,
	})

	if st.Role == api.RoleManager {
		if err := n.startManager(ctx); err != nil {
			return err
		}
	}
	defer n.stopManager()

	stopAPI, err := n.serveAPI()
	if err != nil {
		return err
	}
	defer stopAPI()

	stopSocket, err := n.serveSocket()
	if err != nil {
		return err
	}
	defer stopSocket()

	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	wg.Add(2)
	go func() { defer wg.Done(); n.joinGossip(ctx) }()
	go func() { defer wg.Done(); n.agent.Run(ctx) }()

	if n.cfg.Ready != nil {
		st := n.state()
		info := ReadyInfo{NodeID: st.NodeID, ClusterID: st.ClusterID, Role: string(st.Role), Resumed: resumed, AutoLock: n.cfg.AutoLock,
			APIAddr: n.endpoints(st).API, SocketPath: n.paths.socket()}
		n.cfg.Ready(info)
	}
	return n.loop(ctx)
}

// loop reacts to what the cluster says of this node until it stops.
func (n *Node) loop(ctx context.Context) error {
	renew, stopRenew := n.clock.NewTicker(time.Hour)
	defer stopRenew()
	for {
		select {
		case <-ctx.Done():
			// A stop is not a leave: the node keeps its place in gossip,
			// so a quick restart does not make the cluster replace its tasks.
			n.log.Info("stopping")
			return nil
		case r := <-n.heartbeats:
			if err := n.onHeartbeat(ctx, r); err != nil {
				return err
			}
		case req := <-n.leave:
			err := n.doLeave(ctx, req.force)
			req.done <- err
			if err == nil {
				select {
				case <-req.answered:
				case <-time.After(2 * time.Second):
				}
				return errLeft
			}
		case <-renew:
			n.renewIfDue(ctx)
		}
	}
}

func (n *Node) onHeartbeat(ctx context.Context, r api.HeartbeatResponse) error {
	if r.Removed {
		return fmt.Errorf("this node was removed from the cluster (shoal node rm): to use it again, remove %s and join again", n.cfg.DataDir)
	}
	n.mu.Lock()
	n.leaderID = r.LeaderID
	changed := len(r.Managers) > 0 && !slices.Equal(n.st.Managers, r.Managers)
	if changed {
		n.st.Managers = r.Managers
	}
	st := *n.st
	n.mu.Unlock()
	// Written (and synced) only when the manager list changes, not on
	// every beat.
	if changed {
		if err := saveState(n.paths, &st); err != nil {
			n.log.Warn("save manager list", "err", err)
		}
	}
	if r.Role == "" || r.Role == st.Role {
		return nil
	}
	n.log.Info("role changed by the cluster", "was", st.Role, "now", r.Role)
	if err := n.renewCert(ctx, r.Role); err != nil {
		n.log.Warn("renew certificate for new role; will retry", "err", err)
		return nil
	}
	if r.Role == api.RoleManager {
		if err := n.startManager(ctx); err != nil {
			n.log.Error("start manager role", "err", err)
		}
	} else {
		n.stopManager()
		if err := os.RemoveAll(n.paths.raft()); err != nil {
			n.log.Warn("remove raft state of demoted manager", "err", err)
		}
		if err := os.Remove(n.paths.dekFile().Path); err != nil && !os.IsNotExist(err) {
			n.log.Warn("remove key file of demoted manager", "err", err)
		}
		n.mu.Lock()
		n.dek, n.wrappedWith = nil, ""
		n.mu.Unlock()
	}
	if err := n.gossip.UpdateMeta(gossip.Meta{Role: string(r.Role), API: n.endpoints(st).API}); err != nil {
		n.log.Warn("update gossip meta", "err", err)
	}
	return nil
}

// renewCert gets a certificate for role from the managers and saves it with the role.
func (n *Node) renewCert(ctx context.Context, role api.NodeRole) error {
	keyPEM, csr, err := newKeyAndCSR()
	if err != nil {
		return err
	}
	var lastErr error = errors.New("no manager known")
	for _, m := range n.managers() {
		c, err := n.dial(m.API)
		if err != nil {
			lastErr = err
			continue
		}
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		resp, err := c.RenewCert(cctx, api.CertRequest{CSRPEM: string(csr)})
		cancel()
		if err != nil {
			lastErr = err
			continue
		}
		if role != "" && resp.Role != role {
			lastErr = fmt.Errorf("manager %s signed for role %s, want %s: its store is behind", m.API, resp.Role, role)
			continue
		}
		if err := saveCerts(n.paths, nil, []byte(resp.CertPEM), keyPEM); err != nil {
			return err
		}
		n.mu.Lock()
		n.st.Role = resp.Role
		st := *n.st
		n.mu.Unlock()
		if err := saveState(n.paths, &st); err != nil {
			return err
		}
		return n.loadIdentity(&st)
	}
	return fmt.Errorf("renew certificate: %w", lastErr)
}

func (n *Node) renewIfDue(ctx context.Context) {
	cert := n.currentCert()
	if cert.Leaf == nil || !ca.NeedsRenewal(cert.Leaf, n.clock.Now()) {
		return
	}
	if err := n.renewCert(ctx, ""); err != nil {
		n.log.Warn("certificate renewal failed; will retry", "err", err)
		return
	}
	n.log.Info("certificate renewed")
}

// joinGossip keeps this node merged with the others: it joins the
// managers it knows and retries members it saw die, so a restarted node or
// a healed partition merges again.
func (n *Node) joinGossip(ctx context.Context) {
	self := n.endpoints(n.state()).Gossip
	for {
		alive := map[string]bool{}
		members := n.gossip.Members()
		for _, m := range members {
			if m.State == gossip.StateAlive || m.State == gossip.StateSuspect {
				alive[m.Addr] = true
			}
		}
		var seeds []string
		for _, m := range n.managers() {
			if m.Gossip != "" && m.Gossip != self && !alive[m.Gossip] {
				seeds = append(seeds, m.Gossip)
			}
		}
		for _, m := range members {
			if m.State == gossip.StateDead && m.Addr != self && !alive[m.Addr] && !slices.Contains(seeds, m.Addr) {
				seeds = append(seeds, m.Addr)
			}
		}
		if len(seeds) > 0 {
			if _, err := n.gossip.Join(seeds); err != nil {
				n.log.Debug("gossip join", "seeds", seeds, "err", err)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(2 * time.Second):
		}
	}
}

// membership adapts gossip to what the manager needs.
type membership struct{ g *gossip.Gossip }

func (m membership) Alive(id string) bool {
	s, ok := m.g.State(id)
	return ok && (s == gossip.StateAlive || s == gossip.StateSuspect)
}

func (m membership) Dead(id string) bool {
	s, ok := m.g.State(id)
	return ok && (s == gossip.StateDead || s == gossip.StateLeft)
}

// serveSD answers Prometheus's http_sd from the manager's store; a node
// that is not a manager now says so.
func (n *Node) serveSD(w http.ResponseWriter, r *http.Request) {
	rm := n.runningManager()
	if rm == nil {
		http.Error(w, "this node is not a manager: point http_sd_configs at a manager's /sd/prometheus", http.StatusServiceUnavailable)
		return
	}
	rm.m.SDHandler().ServeHTTP(w, r)
}

// serveMetrics serves the node registry plus the manager's, if any, and
// Prometheus's http_sd on managers.
func (n *Node) serveMetrics() (func(), error) {
	ln, err := net.Listen("tcp", n.cfg.MetricsAddr)
	if err != nil {
		return nil, fmt.Errorf("metrics listener: %w", err)
	}
	gatherers := prometheus.Gatherers{n.reg, prometheus.GathererFunc(func() ([]*dto.MetricFamily, error) {
		n.mu.Lock()
		m := n.mgr
		n.mu.Unlock()
		if m == nil {
			return nil, nil
		}
		return m.reg.Gather()
	})}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(gatherers, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /sd/prometheus", n.serveSD)
	srv := httpserve.New(mux)
	go func() { _ = srv.Serve(ln) }()
	return func() { _ = srv.Close() }, nil
}
