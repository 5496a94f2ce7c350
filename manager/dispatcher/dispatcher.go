package dispatcher

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
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

// Config wires a Dispatcher. Zero durations take the defaults.
type Config struct {
	Store  *store.Store
	Gossip Gossip
	Clock  clock.Clock
	Logger *slog.Logger
	// Period is how often nodes beat (default 1s); a node that misses
	// Timeout (default 3 periods) of beats is down.
	Period   time.Duration
	Timeout  time.Duration
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

	heartbeats prometheus.Counter
	batchSizes prometheus.Histogram
	sessions   prometheus.GaugeFunc
	changes    *prometheus.CounterVec
}

// New returns a dispatcher; call Run while this manager leads.
func New(cfg Config) *Dispatcher {
	if cfg.Period == 0 {
		cfg.Period = time.Second
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = 3 * cfg.Period
	}
	d := &Dispatcher{cfg: cfg, log: cfg.Logger.With("component", "dispatcher"), lastSeen: map[string]time.Time{},
		statusQueue: make(chan statusBatch)}
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
	return d
}

func (d *Dispatcher) liveSessions() int {
	now := d.cfg.Clock.Now()
	d.mu.Lock()
	defer d.mu.Unlock()
	n := 0
	for _, t := range d.lastSeen {
		if now.Sub(t) <= d.cfg.Timeout {
			n++
		}
	}
	return n
}

// Heartbeat records that nodeID is alive and brings its stored status and
// description up to date. A node that is no longer in the cluster is told so.
func (d *Dispatcher) Heartbeat(ctx context.Context, nodeID string, hb api.Heartbeat) (api.HeartbeatResponse, error) {
	d.heartbeats.Inc()
	resp := api.HeartbeatResponse{Period: d.cfg.Period}
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
	return resp, nil
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
	d.active.Store(true)
	defer d.active.Store(false)
	go d.runStatusWriter(ctx)
	tick, stop := d.cfg.Clock.NewTicker(d.cfg.Period / 4)
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

// check writes down every node that has gone quiet.
func (d *Dispatcher) check(ctx context.Context, start, now time.Time) {
	type verdict struct{ id, why string }
	var down []verdict
	d.mu.Lock()
	d.cfg.Store.View(func(tx store.ReadTx) {
		for _, n := range tx.Nodes() {
			if n.Status.State == api.NodeStateDown {
				continue
			}
			seen, ok := d.lastSeen[n.ID]
			if !ok {
				seen = start
			}
			quiet := now.Sub(seen)
			switch {
			case quiet > d.cfg.Timeout:
				down = append(down, verdict{n.ID, fmt.Sprintf("no heartbeat for %s", quiet.Round(time.Millisecond))})
			// Two missed beats: a node that restarts (and so drops out of
			// gossip for a moment) is back before it is judged.
			case quiet > 2*d.cfg.Period && d.cfg.Gossip.Dead(n.ID):
				down = append(down, verdict{n.ID, "gossip reports the node dead and its heartbeats stopped"})
			}
		}
	})
	d.mu.Unlock()
	if len(down) == 0 {
		return
	}
	err := d.cfg.Store.Update(ctx, func(tx *store.Tx) error {
		for _, v := range down {
			n := tx.Node(v.id)
			if n == nil || n.Status.State == api.NodeStateDown || d.beatSince(v.id, now) {
				continue // gone, already down, or it beat while we decided
			}
			n.Status.State = api.NodeStateDown
			n.Status.Message = v.why
			if err := tx.PutNode(n); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		d.log.Warn("mark nodes down", "err", err)
		return
	}
	for _, v := range down {
		d.changes.WithLabelValues(string(api.NodeStateDown)).Inc()
		d.log.Info("node down", "node", v.id, "reason", v.why)
	}
}
