package dispatcher

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"reflect"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/shoal-dev/shoal/api"
	"github.com/shoal-dev/shoal/clock"
	"github.com/shoal-dev/shoal/store"
)

// Gossip tells what membership says about a node.
type Gossip interface {
	// Dead reports whether gossip saw the node die or leave.
	Dead(id string) bool
}

// ErrNotReady answers heartbeats while this manager is not leading with a
// store that has caught up; the node tries again.
var ErrNotReady = errors.New("dispatcher: the leader is still catching up, try again")

// Defaults of the cluster's dispatcher settings (api.DispatcherConfig).
const (
	DefaultPeriod = time.Second
	DefaultGrace  = 15 * time.Second
)

// Config wires a Dispatcher. Zero durations take the defaults.
type Config struct {
	Store  *store.Store
	Gossip Gossip
	Clock  clock.Clock
	Logger *slog.Logger
	// Period is how often nodes beat and Grace how long a node that stopped
	// beating but that gossip still sees keeps its tasks, when the cluster
	// object sets neither (shoal init --dispatcher-heartbeat-period,
	// --node-down-grace).
	Period   time.Duration
	Grace    time.Duration
	Registry prometheus.Registerer
}

// Dispatcher runs on every manager but decides only while leading.
type Dispatcher struct {
	cfg Config
	log *slog.Logger

	mu       sync.Mutex
	lastSeen map[string]time.Time
	// active is set while Run decides, that is while this manager leads
	// with a store that has caught up.
	active atomic.Bool

	statusQueue chan statusBatch
	// hub is this term's view of every node's assignments, nil while not leading.
	hub atomic.Pointer[hub]
	// period and grace are the cluster's settings as the last check read them.
	period, grace atomic.Int64

	heartbeats prometheus.Counter
	batchSizes prometheus.Histogram
	sessions   prometheus.GaugeFunc
	changes    *prometheus.CounterVec
	files      *fileMetrics
}

// New returns a dispatcher; call Run while this manager leads.
func New(cfg Config) *Dispatcher {
	if cfg.Period == 0 {
		cfg.Period = DefaultPeriod
	}
	if cfg.Grace == 0 {
		cfg.Grace = DefaultGrace
	}
	d := &Dispatcher{cfg: cfg, log: cfg.Logger.With("component", "dispatcher"), lastSeen: map[string]time.Time{},
		statusQueue: make(chan statusBatch)}
	d.period.Store(int64(cfg.Period))
	d.grace.Store(int64(cfg.Grace))
	d.batchSizes = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name: "shoal_dispatcher_status_batch_size", Help: "Task status updates written per raft write.",
		Buckets: prometheus.ExponentialBuckets(1, 2, 10),
	})
	d.heartbeats = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "shoal_dispatcher_heartbeats_total", Help: "Node heartbeats received by this manager while leading.",
	})
	d.sessions = prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "shoal_dispatcher_sessions", Help: "Nodes whose heartbeat is current, as seen by this manager.",
	}, func() float64 { return float64(d.liveSessions()) })
	d.changes = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "shoal_dispatcher_node_state_changes_total", Help: "Node state changes decided by the leader.",
	}, []string{"state"})
	if cfg.Registry != nil {
		cfg.Registry.MustRegister(d.heartbeats, d.sessions, d.changes, d.batchSizes)
	}
	d.files = newFileMetrics(cfg.Registry)
	return d
}

// settings reads the cluster's heartbeat period and down grace.
func (d *Dispatcher) settings() (period, grace time.Duration) {
	period, grace = d.cfg.Period, d.cfg.Grace
	d.cfg.Store.View(func(tx store.ReadTx) {
		if c := tx.Cluster(); c != nil {
			if c.Dispatcher.HeartbeatPeriod > 0 {
				period = c.Dispatcher.HeartbeatPeriod
			}
			if c.Dispatcher.NodeDownGrace > 0 {
				grace = c.Dispatcher.NodeDownGrace
			}
		}
	})
	d.period.Store(int64(period))
	d.grace.Store(int64(grace))
	return period, grace
}

func (d *Dispatcher) liveSessions() int {
	now := d.cfg.Clock.Now()
	timeout := missedBeats * time.Duration(d.period.Load())
	d.mu.Lock()
	defer d.mu.Unlock()
	n := 0
	for _, t := range d.lastSeen {
		if now.Sub(t) <= timeout {
			n++
		}
	}
	return n
}

// Heartbeat records that nodeID is alive and brings its stored status and
// description up to date. A node that is no longer in the cluster is told so.
//
// A heartbeat cannot change who a node is: nodeID comes from the caller's
// certificate, the address is peerAddr, the one the call came from (the
// host of the API, raft and gossip endpoints too), and the hostname stays
// the one given at join. Empty peerAddr keeps the stored address.
func (d *Dispatcher) Heartbeat(ctx context.Context, nodeID, peerAddr string, hb api.Heartbeat) (api.HeartbeatResponse, error) {
	d.heartbeats.Inc()
	resp := api.HeartbeatResponse{Period: time.Duration(d.period.Load())}
	if !d.active.Load() {
		return resp, ErrNotReady
	}
	var node *api.Node
	d.cfg.Store.View(func(tx store.ReadTx) { node = tx.Node(nodeID) })
	if node == nil {
		resp.Removed = true
		return resp, nil
	}
	d.mu.Lock()
	d.lastSeen[nodeID] = d.cfg.Clock.Now()
	d.mu.Unlock()
	hb = pinIdentity(node, peerAddr, hb)
	if needsWrite(node, hb) {
		err := d.cfg.Store.Update(ctx, func(tx *store.Tx) error {
			n := tx.Node(nodeID)
			if n == nil {
				return fmt.Errorf("node %s: %w", nodeID, store.ErrNotFound)
			}
			if n.Status.State != api.NodeStateReady {
				d.changes.WithLabelValues(string(api.NodeStateReady)).Inc()
				d.log.Info("node ready", "node", nodeID, "was", n.Status.State)
			}
			if n.FirstHeartbeatAt.IsZero() {
				n.FirstHeartbeatAt = d.cfg.Clock.Now()
			}
			n.Status = api.NodeStatus{State: api.NodeStateReady, Addr: hb.Addr}
			n.Description = hb.Description
			n.Endpoints = hb.Endpoints
			node = n
			return tx.PutNode(n)
		})
		if err != nil {
			return resp, fmt.Errorf("record heartbeat of %s: %w", nodeID, err)
		}
	}
	resp.Role = node.Spec.Role
	resp.Availability = node.Spec.Availability
	if h := d.hub.Load(); h != nil {
		resp.Managers = h.managerEndpoints()
	}
	return resp, nil
}

// pinIdentity makes hb say what the node is allowed to say of itself.
func pinIdentity(n *api.Node, peerAddr string, hb api.Heartbeat) api.Heartbeat {
	if peerAddr == "" {
		peerAddr = n.Status.Addr
	}
	if peerAddr != "" {
		hb.Addr = peerAddr
		pin := func(ep string) string {
			if _, port, err := net.SplitHostPort(ep); err == nil {
				return net.JoinHostPort(peerAddr, port)
			}
			return ep
		}
		hb.Endpoints.API, hb.Endpoints.Raft, hb.Endpoints.Gossip = pin(hb.Endpoints.API), pin(hb.Endpoints.Raft), pin(hb.Endpoints.Gossip)
	}
	if n.Description.Hostname != "" {
		hb.Description.Hostname = n.Description.Hostname
	}
	return hb
}

func needsWrite(n *api.Node, hb api.Heartbeat) bool {
	return n.Status.State != api.NodeStateReady || n.FirstHeartbeatAt.IsZero() || n.Status.Addr != hb.Addr ||
		n.Endpoints != hb.Endpoints || !reflect.DeepEqual(n.Description, hb.Description)
}

// Run marks nodes down when their heartbeats stop or gossip says they died,
// until ctx ends. Call it when this manager becomes leader.
func (d *Dispatcher) Run(ctx context.Context) {
	// A new leader has seen no heartbeat yet: give every node a full
	// timeout to check in before judging it.
	now := d.cfg.Clock.Now()
	d.mu.Lock()
	d.lastSeen = map[string]time.Time{}
	d.mu.Unlock()
	start := now
	h := newHub()
	d.hub.Store(h)
	go h.run(ctx, d.cfg.Store)
	d.active.Store(true)
	defer d.active.Store(false)
	go d.runStatusWriter(ctx)
	period, _ := d.settings()
	tick, stop := d.cfg.Clock.NewTicker(period / 4)
	defer stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-tick:
			d.check(ctx, start, now)
		}
	}
}

// beatSince reports whether id's last heartbeat came after t.
func (d *Dispatcher) beatSince(id string, t time.Time) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	seen, ok := d.lastSeen[id]
	return ok && seen.After(t)
}

// missedBeats is how many periods without a heartbeat make a node unknown.
const missedBeats = 3

// check judges every node that has gone quiet. Heartbeats alone cannot
// tell a dead node from a slow or lossy link, so gossip (memberlist's
// direct and indirect probes) decides which it is:
//   - gossip says dead and 2 beats missed: down at once, so a dead node's
//     tasks are replaced within about 3 s;
//   - 3 beats missed but gossip still sees the node (alive or suspect):
//     unknown, its tasks kept; down only after the grace more.
func (d *Dispatcher) check(ctx context.Context, start, now time.Time) {
	period, grace := d.settings()
	type verdict struct {
		id, why string
		state   api.NodeState
	}
	var verdicts []verdict
	// The hub's copy of the nodes, when it has caught up with the store: a
	// read of every node from the store four times a period costs the
	// leader more than the beats themselves.
	var nodes []nodeState
	ok := false
	if h := d.hub.Load(); h != nil {
		nodes, ok = h.nodeStates(d.cfg.Store.Index())
	}
	if !ok {
		d.cfg.Store.View(func(tx store.ReadTx) {
			for _, n := range tx.Nodes() {
				nodes = append(nodes, nodeState{n.ID, n.Status.State})
			}
		})
	}
	d.mu.Lock()
	for _, n := range nodes {
		if n.state == api.NodeStateDown {
			continue
		}
		seen, ok := d.lastSeen[n.id]
		if !ok {
			seen = start
		}
		quiet := now.Sub(seen)
		switch {
		// Two missed beats: a node that restarts (and so drops out of
		// gossip for a moment) is back before it is judged.
		case quiet > 2*period && d.cfg.Gossip.Dead(n.id):
			verdicts = append(verdicts, verdict{n.id, "gossip reports the node dead and its heartbeats stopped", api.NodeStateDown})
		case quiet > missedBeats*period+grace:
			verdicts = append(verdicts, verdict{n.id, fmt.Sprintf("no heartbeat for %s", quiet.Round(time.Millisecond)), api.NodeStateDown})
		case quiet > missedBeats*period && n.state == api.NodeStateReady:
			verdicts = append(verdicts, verdict{n.id, fmt.Sprintf("no heartbeat for %s but gossip still reaches the node: its tasks stay for %s",
				quiet.Round(time.Millisecond), grace), api.NodeStateUnknown})
		}
	}
	d.mu.Unlock()
	if len(verdicts) == 0 {
		return
	}
	var done []verdict
	err := d.cfg.Store.Update(ctx, func(tx *store.Tx) error {
		done = done[:0]
		for _, v := range verdicts {
			n := tx.Node(v.id)
			if n == nil || n.Status.State == api.NodeStateDown || n.Status.State == v.state || d.beatSince(v.id, now) {
				continue // gone, already judged, or it beat while we decided
			}
			n.Status.State = v.state
			n.Status.Message = v.why
			if err := tx.PutNode(n); err != nil {
				return err
			}
			done = append(done, v)
		}
		return nil
	})
	if err != nil {
		d.log.Warn("mark quiet nodes", "err", err)
		return
	}
	for _, v := range done {
		d.changes.WithLabelValues(string(v.state)).Inc()
		d.log.Info("node "+string(v.state), "node", v.id, "reason", v.why)
	}
}
