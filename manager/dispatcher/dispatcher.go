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
	// Alive reports whether gossip sees the node alive or suspect.
	Alive(id string) bool
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

// BeatsPerSecond is the heartbeat rate the leader aims at: past
// BeatsPerSecond x period nodes, the period nodes are told grows with their
// number (in whole multiples of the cluster's period), so 1,000 nodes beat
// every 5 s at the default 1 s, Swarm's own period. Each beat costs the
// leader a request over TLS; a dead node is still found in about 2 s by
// gossip, or by its session ending (see check).
const BeatsPerSecond = 200

// scaledPeriod is the period told to nodes when the cluster has n of them.
func scaledPeriod(base time.Duration, n int) time.Duration {
	if base <= 0 {
		return base
	}
	perPeriod := int(BeatsPerSecond * base.Seconds())
	if perPeriod < 1 {
		perPeriod = 1
	}
	k := (n + perPeriod - 1) / perPeriod
	if k < 1 {
		k = 1
	}
	return time.Duration(k) * base
}

// session is what the leader knows of one node's session this term.
type session struct {
	// beat is when the node last beat, period the period it was told then.
	beat   time.Time
	period time.Duration
	// polls counts its assignment long polls open now; ended is when the
	// last one ended because the node went away (zero once it polls or
	// beats again).
	polls int
	ended time.Time
}

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
	sessions map[string]*session
	// active is set while Run decides, that is while this manager leads
	// with a store that has caught up.
	active atomic.Bool

	statusQueue chan statusBatch
	// hub is this term's view of every node's assignments, nil while not leading.
	hub atomic.Pointer[hub]
	// period and grace are the cluster's settings as the last check read
	// them; told is the period nodes are told now (period scaled with the
	// number of nodes).
	period, grace, told atomic.Int64

	heartbeats prometheus.Counter
	batchSizes prometheus.Histogram
	live       prometheus.GaugeFunc
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
	d := &Dispatcher{cfg: cfg, log: cfg.Logger.With("component", "dispatcher"), sessions: map[string]*session{},
		statusQueue: make(chan statusBatch)}
	d.period.Store(int64(cfg.Period))
	d.grace.Store(int64(cfg.Grace))
	d.told.Store(int64(cfg.Period))
	d.batchSizes = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name: "shoal_dispatcher_status_batch_size", Help: "Task status updates written per raft write.",
		Buckets: prometheus.ExponentialBuckets(1, 2, 10),
	})
	d.heartbeats = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "shoal_dispatcher_heartbeats_total", Help: "Node heartbeats received by this manager while leading.",
	})
	d.live = prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "shoal_dispatcher_sessions", Help: "Nodes whose heartbeat is current, as seen by this manager.",
	}, func() float64 { return float64(d.liveSessions()) })
	d.changes = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "shoal_dispatcher_node_state_changes_total", Help: "Node state changes decided by the leader.",
	}, []string{"state"})
	if cfg.Registry != nil {
		cfg.Registry.MustRegister(d.heartbeats, d.live, d.changes, d.batchSizes)
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
	d.mu.Lock()
	defer d.mu.Unlock()
	n := 0
	for _, s := range d.sessions {
		if !s.beat.IsZero() && now.Sub(s.beat) <= missedBeats*s.period {
			n++
		}
	}
	return n
}

// sessionOf returns id's session, made if new; d.mu must be held.
func (d *Dispatcher) sessionOf(id string) *session {
	s := d.sessions[id]
	if s == nil {
		s = &session{}
		d.sessions[id] = s
	}
	return s
}

// pollStarted and pollEnded follow the node's assignment long polls: a
// node whose last poll ended because it went away (its agent stopped, its
// connection closed) and that neither polls nor beats again soon has
// lost its session.
func (d *Dispatcher) pollStarted(id string) {
	d.mu.Lock()
	s := d.sessionOf(id)
	s.polls++
	s.ended = time.Time{}
	d.mu.Unlock()
}

func (d *Dispatcher) pollEnded(id string, callerGone bool) {
	d.mu.Lock()
	// A poll of an earlier term (the map is new each term) is not counted.
	if s := d.sessions[id]; s != nil && s.polls > 0 {
		s.polls--
		if s.polls == 0 && callerGone {
			s.ended = d.cfg.Clock.Now()
		}
	}
	d.mu.Unlock()
}

// Heartbeat records that nodeID is alive and brings its stored status and
// description up to date. A node that is no longer in the cluster is told so.
//
// A heartbeat cannot change who a node is: nodeID comes from the caller's
// certificate, the address is peerAddr, the one the call came from (the
// host of the API, raft and gossip endpoints too), and the hostname stays
// the one given at join. Empty peerAddr keeps the stored address.
//
// A nil hb is a beat that says nothing changed since the node's last full
// beat (the agent sends its description only when it changes): the stored
// description stands. A node never described is asked for it.
func (d *Dispatcher) Heartbeat(ctx context.Context, nodeID, peerAddr string, hb *api.Heartbeat) (api.HeartbeatResponse, error) {
	d.heartbeats.Inc()
	period := time.Duration(d.told.Load())
	resp := api.HeartbeatResponse{Period: period}
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
	s := d.sessionOf(nodeID)
	s.beat, s.period, s.ended = d.cfg.Clock.Now(), period, time.Time{}
	d.mu.Unlock()
	if hb == nil {
		if node.FirstHeartbeatAt.IsZero() {
			resp.Describe = true
			return resp, nil
		}
		hb = &api.Heartbeat{Description: node.Description, Endpoints: node.Endpoints, Addr: node.Status.Addr}
	}
	full := pinIdentity(node, peerAddr, *hb)
	if needsWrite(node, full) {
		hb := full
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
	d.sessions = map[string]*session{}
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

// cameBack reports whether id beat after t or, when its session had ended,
// polls again.
func (d *Dispatcher) cameBack(id string, t time.Time, sessionEnded bool) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	s, ok := d.sessions[id]
	return ok && (s.beat.After(t) || (sessionEnded && s.ended.IsZero()))
}

// missedBeats is how many periods without a heartbeat make a node unknown.
const missedBeats = 3

// check judges every node that has gone quiet. Heartbeats alone cannot
// tell a dead node from a slow or lossy link, so gossip (memberlist's
// direct and indirect probes) decides which it is:
//   - gossip says dead and no beat for 2 of the cluster's periods: down at
//     once, so a dead node's tasks are replaced within about 3 s;
//   - gossip has no view of the node (it is not a member) and the node's
//     session ended (its last assignment long poll ended because it went
//     away) 2 periods ago without a poll or a beat since: down at once;
//   - 3 of the periods it was told missed but gossip still sees the node
//     (alive or suspect): unknown, its tasks kept; down only after the
//     grace more.
//
// The two fast rules use the cluster's period, not the period told (which
// grows with the number of nodes): that is the time a restarting agent has
// to come back before its tasks are moved.
func (d *Dispatcher) check(ctx context.Context, start, now time.Time) {
	period, grace := d.settings()
	type verdict struct {
		id, why string
		state   api.NodeState
		ended   bool
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
	counted := 0
	for _, n := range nodes {
		if n.state != api.NodeStateDown {
			counted++
		}
	}
	told := scaledPeriod(period, counted)
	d.told.Store(int64(told))
	d.mu.Lock()
	if len(d.sessions) > len(nodes) { // forget removed nodes
		known := make(map[string]bool, len(nodes))
		for _, n := range nodes {
			known[n.id] = true
		}
		for id, s := range d.sessions {
			if !known[id] && s.polls == 0 {
				delete(d.sessions, id)
			}
		}
	}
	for _, n := range nodes {
		if n.state == api.NodeStateDown {
			continue
		}
		s := d.sessions[n.id]
		seen, nodePeriod := start, told
		var ended time.Time
		if s != nil {
			if !s.beat.IsZero() {
				seen, nodePeriod = s.beat, s.period
			}
			ended = s.ended
		}
		quiet := now.Sub(seen)
		switch {
		// Two missed beats: a node that restarts (and so drops out of
		// gossip for a moment) is back before it is judged.
		case quiet > 2*period && d.cfg.Gossip.Dead(n.id):
			verdicts = append(verdicts, verdict{n.id, "gossip reports the node dead and its heartbeats stopped", api.NodeStateDown, false})
		case !ended.IsZero() && now.Sub(ended) > 2*period && !d.cfg.Gossip.Alive(n.id) && !d.cfg.Gossip.Dead(n.id):
			verdicts = append(verdicts, verdict{n.id, fmt.Sprintf("its session ended %s ago (the node went away) and gossip has no view of it",
				now.Sub(ended).Round(time.Millisecond)), api.NodeStateDown, true})
		case quiet > missedBeats*nodePeriod+grace:
			verdicts = append(verdicts, verdict{n.id, fmt.Sprintf("no heartbeat for %s", quiet.Round(time.Millisecond)), api.NodeStateDown, false})
		case quiet > missedBeats*nodePeriod && n.state == api.NodeStateReady:
			verdicts = append(verdicts, verdict{n.id, fmt.Sprintf("no heartbeat for %s but gossip still reaches the node: its tasks stay for %s",
				quiet.Round(time.Millisecond), grace), api.NodeStateUnknown, false})
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
			if n == nil || n.Status.State == api.NodeStateDown || n.Status.State == v.state || d.cameBack(v.id, now, v.ended) {
				continue // gone, already judged, or it came back while we decided
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
