package raft

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	hraft "github.com/hashicorp/raft"
	"github.com/prometheus/client_golang/prometheus"
)

// Defaults, tuned for a failover under two seconds on a LAN.
const (
	DefaultHeartbeatTimeout   = 500 * time.Millisecond
	DefaultElectionTimeout    = 500 * time.Millisecond
	DefaultLeaderLeaseTimeout = 250 * time.Millisecond
	DefaultCommitTimeout      = 20 * time.Millisecond
	DefaultSnapshotThreshold  = 8192
	DefaultSnapshotInterval   = 30 * time.Second
	// DefaultOpTimeout bounds Apply, Barrier and membership changes whose ctx has no deadline.
	DefaultOpTimeout = 5 * time.Second

	dbFile         = "raft.db" // the raft-boltdb store of older versions, migrated to wal
	snapshotRetain = 2
	logCacheSize   = 512
)

// Config describes one manager's raft node.
type Config struct {
	NodeID        string
	DataDir       string // this package's own directory, created 0700
	BindAddr      string // host:port to listen on
	AdvertiseAddr string // host:port the others dial; empty means the listener's address
	// TLS is used as is for both the listener and the dialer (mutual TLS). nil means plain
	// TCP, for tests only.
	TLS *tls.Config
	// DEK, if set, seals the log entries and snapshots on disk (encrypt.go).
	DEK    []byte
	FSM    hraft.FSM
	Logger *slog.Logger
	// Registry receives the shoal_raft_* metrics; nil registers none.
	Registry prometheus.Registerer

	// Zero takes the Default* value.
	HeartbeatTimeout, ElectionTimeout, LeaderLeaseTimeout, CommitTimeout time.Duration
	SnapshotThreshold                                                    uint64
	SnapshotInterval                                                     time.Duration
}

// Server is one member of the raft configuration.
type Server struct {
	ID    string
	Addr  string
	Voter bool
}

// Raft is a running raft node.
type Raft struct {
	raft     *hraft.Raft
	id       string
	addr     string
	hasState bool
	logger   *slog.Logger
	store    *logStore
	unlock   func()
	fsm      *sizeFSM
	metrics  *metrics
	leaders  *leaderFeed
	// leaderWatch follows who leads, seen from this node.
	leaderWatch *leaderWatch
	observer    *hraft.Observer

	stop         chan struct{}
	wg           sync.WaitGroup
	shutdownOnce sync.Once
	shutdownErr  error
}

func (c *Config) withDefaults() Config {
	out := *c
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	def(&out.HeartbeatTimeout, DefaultHeartbeatTimeout)
	def(&out.ElectionTimeout, DefaultElectionTimeout)
	def(&out.LeaderLeaseTimeout, DefaultLeaderLeaseTimeout)
	def(&out.CommitTimeout, DefaultCommitTimeout)
	def(&out.SnapshotInterval, DefaultSnapshotInterval)
	if out.SnapshotThreshold == 0 {
		out.SnapshotThreshold = DefaultSnapshotThreshold
	}
	if out.Logger == nil {
		out.Logger = slog.New(slog.DiscardHandler)
	}
	return out
}

func (c *Config) validate() error {
	switch {
	case c.NodeID == "":
		return errors.New("raft: config: NodeID is empty")
	case c.DataDir == "":
		return errors.New("raft: config: DataDir is empty")
	case c.BindAddr == "":
		return errors.New("raft: config: BindAddr is empty")
	case c.FSM == nil:
		return errors.New("raft: config: FSM is nil")
	}
	return nil
}

// Open starts the raft node on its data directory. It never bootstraps a cluster: a new
// node either calls Bootstrap or waits to be added as a voter by the leader.
func Open(cfg Config) (_ *Raft, err error) {
	defer func() {
		if se := (*StorageError)(nil); errors.As(err, &se) {
			se.Node = cfg.NodeID
		}
	}()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	logger := cfg.Logger.With("component", "raft")
	hlog := newHclog(logger, "")

	notify := make(chan bool, 16)
	hc := hraft.DefaultConfig()
	hc.LocalID = hraft.ServerID(cfg.NodeID)
	hc.HeartbeatTimeout = cfg.HeartbeatTimeout
	hc.ElectionTimeout = cfg.ElectionTimeout
	hc.LeaderLeaseTimeout = cfg.LeaderLeaseTimeout
	hc.CommitTimeout = cfg.CommitTimeout
	hc.SnapshotThreshold = cfg.SnapshotThreshold
	hc.SnapshotInterval = cfg.SnapshotInterval
	hc.Logger = hlog
	hc.NotifyCh = notify
	if err := hraft.ValidateConfig(hc); err != nil {
		return nil, fmt.Errorf("raft: config: %w", err)
	}

	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("raft: data dir: %w", err)
	}
	if err := os.Chmod(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("raft: data dir: %w", err)
	}

	var cleanup []func()
	defer func() {
		if err != nil {
			for i := len(cleanup) - 1; i >= 0; i-- {
				cleanup[i]()
			}
		}
	}()

	unlock, err := lockDir(cfg.DataDir)
	if err != nil {
		return nil, err
	}
	cleanup = append(cleanup, unlock)
	walPath := filepath.Join(cfg.DataDir, walDir)
	store, err := openLogStore(cfg.DataDir, hlog)
	if err != nil {
		return nil, &StorageError{Op: "open", Path: walPath, Err: err}
	}
	cleanup = append(cleanup, func() { store.Close() })
	var logStore hraft.LogStore = store
	fileSnaps, err := hraft.NewFileSnapshotStoreWithLogger(cfg.DataDir, snapshotRetain, hlog.Named("snapshot"))
	if err != nil {
		return nil, fmt.Errorf("raft: snapshot store: %w", err)
	}
	var snaps hraft.SnapshotStore = fileSnaps
	if cfg.DEK != nil {
		aead, err := newAEAD(cfg.DEK)
		if err != nil {
			return nil, err
		}
		logStore = &sealedLogs{LogStore: store, aead: aead}
		snaps = &sealedSnapshots{SnapshotStore: fileSnaps, aead: aead}
	}
	logs, err := hraft.NewLogCache(logCacheSize, logStore)
	if err != nil {
		return nil, fmt.Errorf("raft: log cache: %w", err)
	}
	if err := checkLog(segmentOf(walPath), logStore); err != nil {
		return nil, err
	}
	if err := checkSnapshot(filepath.Join(cfg.DataDir, "snapshots"), snaps); err != nil {
		return nil, err
	}
	hasState, err := hraft.HasExistingState(logs, store, snaps)
	if err != nil {
		return nil, &StorageError{Op: "read existing state from", Path: cfg.DataDir, Err: err}
	}

	stream, err := newStreamLayer(cfg.BindAddr, cfg.AdvertiseAddr, cfg.TLS, logger)
	if err != nil {
		return nil, err
	}
	trans := hraft.NewNetworkTransportWithConfig(&hraft.NetworkTransportConfig{
		Stream:  stream,
		MaxPool: transportMaxPool,
		Timeout: transportTimeout,
		Logger:  hlog.Named("transport"),
	})
	cleanup = append(cleanup, func() { trans.Close() })

	fsm := &sizeFSM{FSM: cfg.FSM}
	hr, err := hraft.NewRaft(hc, fsm, logs, store, snaps, trans)
	if err != nil {
		return nil, storageErr(cfg.DataDir, err)
	}
	// From here the raft instance owns the transport; Shutdown closes it.
	cleanup = append(cleanup[:2], func() { hr.Shutdown().Error() })

	r := &Raft{
		raft:     hr,
		id:       cfg.NodeID,
		addr:     string(trans.LocalAddr()),
		hasState: hasState,
		logger:   logger,
		store:    store,
		unlock:   unlock,
		fsm:      fsm,
		leaders:  newLeaderFeed(),
		stop:     make(chan struct{}),
	}
	r.leaderWatch = newLeaderWatch(r.Leader)
	r.metrics = newMetrics(r)
	if err := r.metrics.register(cfg.Registry); err != nil {
		return nil, err
	}

	observations := make(chan hraft.Observation, 64)
	r.observer = hraft.NewObserver(observations, false, func(o *hraft.Observation) bool {
		_, ok := o.Data.(hraft.LeaderObservation)
		return ok
	})
	hr.RegisterObserver(r.observer)

	r.wg.Add(3)
	go r.watchNotify(notify)
	go r.watchObservations(observations)
	go r.snapshotBySize(snaps)

	logger.Info("raft started", "id", cfg.NodeID, "addr", r.addr, "existing_state", hasState, "tls", cfg.TLS != nil)
	return r, nil
}

// watchNotify forwards this node's leadership changes to the subscribers.
func (r *Raft) watchNotify(notify <-chan bool) {
	defer r.wg.Done()
	for {
		select {
		case leading := <-notify:
			r.logger.Info("leadership changed", "leader", leading)
			r.leaders.publish(leading)
		case <-r.stop:
			return
		}
	}
}

// watchObservations counts leader elections seen by this node and publishes
// each change of leader.
func (r *Raft) watchObservations(obs <-chan hraft.Observation) {
	defer r.wg.Done()
	for {
		select {
		case o := <-obs:
			if lo, ok := o.Data.(hraft.LeaderObservation); ok {
				if lo.LeaderID != "" {
					r.metrics.leaderChanges.Inc()
				}
				r.leaderWatch.refresh()
			}
		case <-r.stop:
			return
		}
	}
}

// ID is this node's raft server ID.
func (r *Raft) ID() string { return r.id }

// Addr is the address this node advertises to its peers.
func (r *Raft) Addr() string { return r.addr }

// HasExistingState reports what hashicorp/raft's HasExistingState said at Open: whether
// this node already had a log, a term or a snapshot.
func (r *Raft) HasExistingState() bool { return r.hasState }

// Bootstrap makes a new cluster whose only voter is this node. It fails with
// ErrExistingState if the node had state at Open or was bootstrapped already.
func (r *Raft) Bootstrap() error {
	if r.hasState {
		return ErrExistingState
	}
	f := r.raft.BootstrapCluster(hraft.Configuration{Servers: []hraft.Server{{
		Suffrage: hraft.Voter,
		ID:       hraft.ServerID(r.id),
		Address:  hraft.ServerAddress(r.addr),
	}}})
	return r.mapErr("bootstrap", f.Error())
}

// opContext gives ctx a DefaultOpTimeout deadline if it has none, and returns the time
// left, to be used as hashicorp/raft's own timeout.
func opContext(ctx context.Context) (context.Context, context.CancelFunc, time.Duration) {
	cancel := context.CancelFunc(func() {})
	if _, ok := ctx.Deadline(); !ok {
		ctx, cancel = context.WithTimeout(ctx, DefaultOpTimeout)
	}
	dl, _ := ctx.Deadline()
	return ctx, cancel, time.Until(dl)
}

// wait waits for f, or for ctx to end. It never hangs past ctx: the goroutine left
// behind ends when raft resolves the future (commit, step down or shutdown).
func wait(ctx context.Context, f hraft.Future) (ctxErr, err error) {
	done := make(chan error, 1)
	go func() { done <- f.Error() }()
	select {
	case err := <-done:
		return nil, err
	case <-ctx.Done():
		return ctx.Err(), nil
	}
}

func noQuorum(op string, ctxErr error) error {
	return fmt.Errorf("%w: %s not committed before the context ended: %w", ErrNoQuorum, op, ctxErr)
}

// Apply replicates data through the log and returns the FSM's response once applied on
// this node. On a follower it fails with a *NotLeaderError (errors.Is ErrNotLeader); if
// the entry is not committed before ctx ends (DefaultOpTimeout without a deadline) or
// leadership is lost meanwhile, with ErrNoQuorum. An FSM response that is an error is
// returned as the error.
func (r *Raft) Apply(ctx context.Context, data []byte) (any, error) {
	switch r.raft.State() {
	case hraft.Leader:
	case hraft.Shutdown:
		return nil, fmt.Errorf("apply: %w", ErrShutdown)
	default:
		return nil, r.notLeader()
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("raft: apply: %w", err) // nothing submitted
	}
	ctx, cancel, timeout := opContext(ctx)
	defer cancel()
	if timeout <= 0 {
		return nil, noQuorum("entry", context.DeadlineExceeded)
	}
	start := time.Now()
	f := r.raft.Apply(data, timeout)
	ctxErr, err := wait(ctx, f)
	r.metrics.applyDuration.Observe(time.Since(start).Seconds())
	if ctxErr != nil {
		return nil, noQuorum("entry", ctxErr)
	}
	if err != nil {
		return nil, r.mapErr("apply", err)
	}
	resp := f.Response()
	if err, ok := resp.(error); ok && err != nil {
		return nil, err
	}
	return resp, nil
}

// Barrier waits until every entry before it is applied to this leader's FSM.
func (r *Raft) Barrier(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("raft: barrier: %w", err)
	}
	ctx, cancel, timeout := opContext(ctx)
	defer cancel()
	if timeout <= 0 {
		return noQuorum("barrier", context.DeadlineExceeded)
	}
	ctxErr, err := wait(ctx, r.raft.Barrier(timeout))
	if ctxErr != nil {
		return noQuorum("barrier", ctxErr)
	}
	return r.mapErr("barrier", err)
}

// IsLeader reports whether this node is the leader right now.
func (r *Raft) IsLeader() bool { return r.raft.State() == hraft.Leader }

// Leader returns the known leader's ID and address, "" when unknown.
func (r *Raft) Leader() (id, addr string) {
	a, i := r.raft.LeaderWithID()
	return string(i), string(a)
}

// LeaderChanges subscribes to this node's leadership: true when it gains leadership,
// false when it loses it (also on Shutdown). If the node leads when subscribing, true is
// sent at once. A slow reader's pending values are replaced by the latest one, so it may
// miss a flip but always ends on the current state. The returned function ends the
// subscription and closes the channel; Shutdown closes it too.
func (r *Raft) LeaderChanges() (<-chan bool, func()) { return r.leaders.subscribe() }

// AddVoter adds (or re-addresses) a voter. Only the leader can; elsewhere it fails with
// ErrNotLeader. It returns once the new configuration is committed.
func (r *Raft) AddVoter(ctx context.Context, id, addr string) error {
	return r.changeConfig(ctx, "add voter "+id, func(timeout time.Duration) hraft.Future {
		return r.raft.AddVoter(hraft.ServerID(id), hraft.ServerAddress(addr), 0, timeout)
	})
}

// RemoveServer removes a server from the configuration. Only the leader can; elsewhere it
// fails with ErrNotLeader. Removing the leader itself makes it step down once committed.
func (r *Raft) RemoveServer(ctx context.Context, id string) error {
	return r.changeConfig(ctx, "remove server "+id, func(timeout time.Duration) hraft.Future {
		return r.raft.RemoveServer(hraft.ServerID(id), 0, timeout)
	})
}

func (r *Raft) changeConfig(ctx context.Context, op string, start func(time.Duration) hraft.Future) error {
	switch r.raft.State() {
	case hraft.Leader:
	case hraft.Shutdown:
		return fmt.Errorf("%s: %w", op, ErrShutdown)
	default:
		return r.notLeader()
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("raft: %s: %w", op, err)
	}
	ctx, cancel, timeout := opContext(ctx)
	defer cancel()
	if timeout <= 0 {
		return noQuorum(op, context.DeadlineExceeded)
	}
	ctxErr, err := wait(ctx, start(timeout))
	if ctxErr != nil {
		return noQuorum(op, ctxErr)
	}
	if err != nil {
		return r.mapErr(op, err)
	}
	r.logger.Info("raft configuration changed", "change", op)
	return nil
}

// Servers returns the latest raft configuration known to this node.
func (r *Raft) Servers() ([]Server, error) {
	f := r.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return nil, r.mapErr("get configuration", err)
	}
	var out []Server
	for _, s := range f.Configuration().Servers {
		out = append(out, Server{ID: string(s.ID), Addr: string(s.Address), Voter: s.Suffrage == hraft.Voter})
	}
	return out, nil
}

// Shutdown stops raft, closes the transport and the store, unregisters the metrics and
// closes the LeaderChanges subscriptions. It is idempotent.
func (r *Raft) Shutdown() error {
	r.shutdownOnce.Do(func() {
		r.raft.DeregisterObserver(r.observer)
		if err := r.raft.Shutdown().Error(); err != nil {
			r.shutdownErr = fmt.Errorf("raft: shutdown: %w", err)
		}
		close(r.stop)
		r.wg.Wait()
		r.leaders.close()
		r.metrics.unregister()
		if err := r.store.Close(); err != nil && r.shutdownErr == nil {
			r.shutdownErr = fmt.Errorf("raft: close %s: %w", walDir, err)
		}
		r.unlock()
		r.logger.Info("raft stopped")
	})
	return r.shutdownErr
}
