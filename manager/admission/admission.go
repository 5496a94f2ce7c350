package admission

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/shoal-dev/shoal/api"
	"github.com/shoal-dev/shoal/clock"
	"github.com/shoal-dev/shoal/store"
)

// Defaults. The burst lets a rack of machines join at once; the rate is
// Swarm-like slow for anything that keeps going (a script in a loop, a
// leaked token).
const (
	DefaultJoinBurst = 10
	DefaultJoinRate  = 1.0
	// DefaultReapAfter is how long a node may stay without its first
	// heartbeat before it is removed: long enough for a slow first start
	// (image pulls happen after the first beat), short enough that
	// phantom nodes do not pile up.
	DefaultReapAfter = 10 * time.Minute
)

// ErrNameTaken is returned by AddNode when another live node has the name.
var ErrNameTaken = errors.New("admission: node name taken")

// Config wires an Admission. A zero ReapAfter takes the default; a zero
// JoinRate disables the limiter, so callers pass the defaults explicitly.
type Config struct {
	Store    *store.Store
	Clock    clock.Clock
	Logger   *slog.Logger
	Registry prometheus.Registerer
	// JoinBurst and JoinRate bound joins per source address and per token:
	// JoinBurst at once, then JoinRate a second. JoinRate 0 disables it.
	JoinBurst int
	JoinRate  float64
	// ReapAfter is how long a node may go without a first heartbeat.
	ReapAfter time.Duration
}

// Admission guards the way into the cluster; Run reaps while leading.
type Admission struct {
	cfg     Config
	log     *slog.Logger
	limiter *Limiter

	// mu serialises the name check with the write that adds the node: the
	// store checks versions only of the objects a write touches, so two
	// joins under one name would both pass without it. Joins are written
	// on the leader only, so a process lock is enough.
	mu sync.Mutex

	refused *prometheus.CounterVec
	reaped  prometheus.Counter
}

// New returns an Admission.
func New(cfg Config) *Admission {
	if cfg.ReapAfter == 0 {
		cfg.ReapAfter = DefaultReapAfter
	}
	a := &Admission{
		cfg:     cfg,
		log:     cfg.Logger.With("component", "admission"),
		limiter: NewLimiter(cfg.JoinBurst, cfg.JoinRate),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "shoal_admission_joins_refused_total", Help: "Joins refused by admission, by reason.",
		}, []string{"reason"}),
		reaped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "shoal_admission_nodes_reaped_total", Help: "Nodes removed because they never sent a heartbeat after joining.",
		}),
	}
	if cfg.Registry != nil {
		cfg.Registry.MustRegister(a.refused, a.reaped)
	}
	return a
}

// AllowJoin takes a join from source (an IP address) with token out of
// both their budgets; when either is spent it says how long to wait.
func (a *Admission) AllowJoin(source, token string) (time.Duration, bool) {
	// The token is keyed by its hash: it stays out of memory dumps of maps.
	sum := sha256.Sum256([]byte(token))
	wait, ok := a.limiter.Allow(a.cfg.Clock.Now(), "addr:"+source, "token:"+hex.EncodeToString(sum[:8]))
	if !ok {
		a.refused.WithLabelValues("rate").Inc()
	}
	return wait, ok
}

// AddNode writes a new node. Its hostname must not be held by another node
// unless that one is down: a machine that lost its data directory may join
// again, two live machines may not share a name.
func (a *Admission) AddNode(ctx context.Context, n *api.Node) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	err := a.cfg.Store.Update(ctx, func(tx *store.Tx) error {
		for _, o := range tx.Nodes() {
			if o.Description.Hostname == n.Description.Hostname && o.Status.State != api.NodeStateDown {
				return fmt.Errorf("%w: node %s is already called %q and is %s: pick another --hostname, or remove that node first (shoal node rm %s)",
					ErrNameTaken, o.ID, o.Description.Hostname, o.Status.State, o.ID)
			}
		}
		return tx.PutNode(n)
	})
	if errors.Is(err, ErrNameTaken) {
		a.refused.WithLabelValues("name").Inc()
	}
	return err
}

// Run removes, while this manager leads, the nodes that joined but never
// sent a heartbeat within ReapAfter, and forgets expired revocations.
func (a *Admission) Run(ctx context.Context) {
	tick, stop := a.cfg.Clock.NewTicker(min(time.Minute, a.cfg.ReapAfter/4))
	defer stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-tick:
			if err := a.Reap(ctx, now); err != nil {
				a.log.Warn("reap nodes that never reported", "err", err)
			}
		}
	}
}

// Reap removes the nodes that joined before now-ReapAfter and never beat,
// revoking their certificates, and drops revocations of expired certificates.
func (a *Admission) Reap(ctx context.Context, now time.Time) error {
	var gone []string
	err := a.cfg.Store.Update(ctx, func(tx *store.Tx) error {
		gone = gone[:0]
		c := tx.Cluster()
		if c == nil {
			return nil
		}
		before := len(c.RevokedCerts)
		for _, n := range tx.Nodes() {
			if !n.FirstHeartbeatAt.IsZero() || n.Status.State == api.NodeStateReady || now.Sub(n.Meta.CreatedAt) < a.cfg.ReapAfter {
				continue
			}
			Revoke(c, n, "")
			if err := tx.DeleteNode(n.ID); err != nil {
				return err
			}
			gone = append(gone, n.ID)
		}
		PruneRevoked(c, now)
		if len(gone) == 0 && len(c.RevokedCerts) == before {
			return nil
		}
		return tx.PutCluster(c)
	})
	if err != nil {
		return err
	}
	for _, id := range gone {
		a.reaped.Inc()
		a.log.Info("removed a node that joined but never sent a heartbeat", "node", id, "after", a.cfg.ReapAfter)
	}
	return nil
}
