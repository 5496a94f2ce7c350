package gossip

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log"
	"log/slog"
	"net"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/memberlist"
	"github.com/prometheus/client_golang/prometheus"
)

// KeySize is the length of a gossip key: AES-256.
const KeySize = 32

var (
	// ErrInvalidKey is returned by Start when the key is missing or not KeySize bytes.
	ErrInvalidKey = errors.New("gossip: invalid key")
	// ErrNoNodeID is returned by Start without a node ID.
	ErrNoNodeID = errors.New("gossip: no node id")
	// ErrMetaTooLarge is returned when encoded metadata does not fit memberlist's limit.
	ErrMetaTooLarge = errors.New("gossip: meta too large")
	// ErrNoSeeds is returned by Join without any address.
	ErrNoSeeds = errors.New("gossip: no seeds")
	// ErrShutdown is returned by calls made after Shutdown.
	ErrShutdown = errors.New("gossip: shut down")
	// ErrBadMessage is the cause of a gossip message that could not be read.
	ErrBadMessage = errors.New("gossip: bad message")
)

// Timings tuned so that a node killed without warning is seen dead by the
// others within about 3 s on a LAN.
const (
	probeInterval           = 400 * time.Millisecond
	probeTimeout            = 200 * time.Millisecond
	suspicionMult           = 2
	suspicionMaxTimeoutMult = 3
	gossipInterval          = 100 * time.Millisecond
	gossipToTheDeadTime     = 5 * time.Second
	deadNodeReclaimTime     = 5 * time.Second
	pushPullInterval        = 10 * time.Second
	tcpTimeout              = 2 * time.Second
	// updateTimeout bounds UpdateMeta's wait for its broadcast to go out.
	updateTimeout = 2 * time.Second
	// defaultLeaveTimeout is used by Leave when given no positive timeout.
	defaultLeaveTimeout = 5 * time.Second
)

// Config configures one node's gossip.
type Config struct {
	// NodeID is the node's name in memberlist; it must be unique in the cluster.
	NodeID string
	// BindIP and Port are where gossip listens, on TCP and UDP. An empty
	// BindIP means all addresses; Port 0 picks a free port (see Addr).
	BindIP string
	Port   int
	// AdvertiseIP is the address others reach this node on; Port is
	// advertised with it. Empty means BindIP when that is a specific
	// address, else memberlist's choice of a private address.
	AdvertiseIP string
	// Key is the cluster gossip key, KeySize bytes (see NewKey). Required.
	Key []byte
	// Meta is this node's initial metadata.
	Meta Meta
	// Logger receives memberlist's log lines; nil discards them.
	Logger *slog.Logger
	// Registry, if set, gets the shoal_gossip_members collector.
	Registry prometheus.Registerer
}

// MemberState is a member's state as this node last saw it.
type MemberState string

const (
	StateAlive   MemberState = "alive"
	StateSuspect MemberState = "suspect"
	StateDead    MemberState = "dead"
	StateLeft    MemberState = "left"
)

// Member is one node as seen through gossip.
type Member struct {
	ID    string
	Addr  string // gossip ip:port
	State MemberState
	Meta  Meta
}

// Event reports a change of a member's state, address or metadata.
type Event struct {
	Member Member
	// Prev is the member's state before the change, "" for a new member.
	Prev MemberState
}

// Gossip is one node's membership in the cluster.
type Gossip struct {
	id       string
	session  string
	log      *slog.Logger
	registry prometheus.Registerer
	coll     prometheus.Collector
	ml       atomic.Pointer[memberlist.Memberlist]
	queue    *memberlist.TransmitLimitedQueue

	mu      sync.Mutex
	meta    []byte // encoded local metadata, served to memberlist
	members map[string]*member
	subs    map[*subscriber]struct{}
	left    bool
	closed  bool

	// life serializes Leave and Shutdown: memberlist panics on a leave
	// after shutdown.
	life         sync.Mutex
	shutdownOnce sync.Once
	shutdownErr  error
}

type member struct {
	Member
	session string // from the member's metadata
	leaving bool   // a leave intent for this session arrived
}

// NewKey returns a new random gossip key.
func NewKey() ([]byte, error) {
	k := make([]byte, KeySize)
	if _, err := rand.Read(k); err != nil {
		return nil, fmt.Errorf("gossip key: %w", err)
	}
	return k, nil
}

// Start creates the node's memberlist and starts listening. It does not
// contact anyone: call Join with the addresses of existing members.
func Start(cfg Config) (*Gossip, error) {
	if len(cfg.Key) != KeySize {
		return nil, fmt.Errorf("%w: got %d bytes, want %d", ErrInvalidKey, len(cfg.Key), KeySize)
	}
	if cfg.NodeID == "" {
		return nil, ErrNoNodeID
	}
	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	logger = logger.With("component", "gossip")

	var sb [8]byte
	if _, err := rand.Read(sb[:]); err != nil {
		return nil, fmt.Errorf("gossip session: %w", err)
	}
	session := hex.EncodeToString(sb[:])
	meta, err := encodeMeta(cfg.Meta, session)
	if err != nil {
		return nil, err
	}
	keyring, err := memberlist.NewKeyring(nil, cfg.Key)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidKey, err)
	}

	g := &Gossip{
		id:       cfg.NodeID,
		session:  session,
		log:      logger,
		registry: cfg.Registry,
		meta:     meta,
		members:  map[string]*member{},
		subs:     map[*subscriber]struct{}{},
	}

	conf := memberlist.DefaultLANConfig()
	conf.Name = cfg.NodeID
	conf.BindAddr = cfg.BindIP
	if conf.BindAddr == "" {
		conf.BindAddr = "0.0.0.0"
	}
	conf.BindPort = cfg.Port
	conf.AdvertiseAddr = cfg.AdvertiseIP
	if ip := net.ParseIP(cfg.BindIP); conf.AdvertiseAddr == "" && ip != nil && !ip.IsUnspecified() {
		conf.AdvertiseAddr = cfg.BindIP
	}
	conf.AdvertisePort = cfg.Port
	conf.ProbeInterval = probeInterval
	conf.ProbeTimeout = probeTimeout
	conf.SuspicionMult = suspicionMult
	conf.SuspicionMaxTimeoutMult = suspicionMaxTimeoutMult
	conf.GossipInterval = gossipInterval
	conf.GossipToTheDeadTime = gossipToTheDeadTime
	conf.DeadNodeReclaimTime = deadNodeReclaimTime
	conf.PushPullInterval = pushPullInterval
	conf.TCPTimeout = tcpTimeout
	conf.Keyring = keyring
	conf.GossipVerifyIncoming = true
	conf.GossipVerifyOutgoing = true
	conf.Delegate = delegate{g}
	conf.Events = events{g}
	conf.Ping = pings{g}
	conf.Logger = log.New(&logWriter{log: logger, onLine: g.onLogLine}, "", 0)

	g.queue = &memberlist.TransmitLimitedQueue{NumNodes: g.numNodes, RetransmitMult: conf.RetransmitMult}

	ml, err := memberlist.Create(conf)
	if err != nil {
		return nil, fmt.Errorf("gossip start on %s:%d: %w", conf.BindAddr, cfg.Port, err)
	}
	g.ml.Store(ml)

	if g.registry != nil {
		g.coll = collector{g}
		if err := g.registry.Register(g.coll); err != nil {
			_ = ml.Shutdown()
			return nil, fmt.Errorf("gossip metrics: %w", err)
		}
	}
	g.log.Info("gossip started", "node", g.id, "addr", g.Addr())
	return g, nil
}

func (g *Gossip) numNodes() int {
	if ml := g.ml.Load(); ml != nil {
		return ml.NumMembers()
	}
	return 1
}

// ID returns this node's ID.
func (g *Gossip) ID() string { return g.id }

// Addr returns the ip:port this node advertises for gossip.
func (g *Gossip) Addr() string { return g.ml.Load().LocalNode().Address() }

// Join contacts the given "ip:port" seeds and merges state with each one that
// answers. It returns how many answered; the error names each seed that did
// not, even when others did.
func (g *Gossip) Join(addrs []string) (int, error) {
	if len(addrs) == 0 {
		return 0, ErrNoSeeds
	}
	if g.isClosed() {
		return 0, ErrShutdown
	}
	ml := g.ml.Load()
	var ok int
	var errs []error
	for _, a := range addrs {
		if _, err := ml.Join([]string{a}); err != nil {
			errs = append(errs, fmt.Errorf("join %s: %w", a, err))
			continue
		}
		ok++
	}
	if len(errs) > 0 {
		return ok, fmt.Errorf("gossip: joined %d of %d seeds: %w", ok, len(addrs), errors.Join(errs...))
	}
	return ok, nil
}

// Members returns every member this node has seen, itself included, with its
// latest state, sorted by ID. Dead and left members stay until Forget.
func (g *Gossip) Members() []Member {
	g.mu.Lock()
	out := make([]Member, 0, len(g.members))
	for _, m := range g.members {
		out = append(out, m.Member)
	}
	g.mu.Unlock()
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// State returns a member's latest state and whether the member is known.
func (g *Gossip) State(id string) (MemberState, bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	m, ok := g.members[id]
	if !ok {
		return "", false
	}
	return m.State, true
}

// UpdateMeta replaces this node's metadata and waits (a bounded time) for
// the change to be broadcast to the others.
func (g *Gossip) UpdateMeta(m Meta) error {
	b, err := encodeMeta(m, g.session)
	if err != nil {
		return err
	}
	g.mu.Lock()
	if g.closed {
		g.mu.Unlock()
		return ErrShutdown
	}
	g.meta = b
	g.mu.Unlock()
	if err := g.ml.Load().UpdateNode(updateTimeout); err != nil {
		return fmt.Errorf("gossip: update meta: %w", err)
	}
	return nil
}

// Forget drops a member from Members, for a node removed from the cluster.
// A member that shows up again is tracked again. Forgetting oneself does nothing.
func (g *Gossip) Forget(id string) {
	if id == g.id {
		return
	}
	g.mu.Lock()
	delete(g.members, id)
	g.mu.Unlock()
}

// Leave tells the others that this node is leaving, so they see it "left"
// rather than "dead", and waits up to timeout (5 s if not positive) for the
// news to go out. Gossip keeps running until Shutdown.
func (g *Gossip) Leave(timeout time.Duration) error {
	if timeout <= 0 {
		timeout = defaultLeaveTimeout
	}
	deadline := time.Now().Add(timeout)
	g.life.Lock()
	defer g.life.Unlock()
	g.mu.Lock()
	if g.closed {
		g.mu.Unlock()
		return ErrShutdown
	}
	if g.left {
		g.mu.Unlock()
		return nil
	}
	g.left = true
	if self, ok := g.members[g.id]; ok {
		self.leaving = true
	}
	g.mu.Unlock()

	ml := g.ml.Load()
	if ml.NumMembers() > 1 {
		// Announce the intent first, so that the others know the dead
		// message that follows is a leave. Receivers that get the two out
		// of order turn "dead" into "left" when the intent arrives.
		b := &intentBroadcast{
			intent: leaveIntent{ID: g.id, Session: g.session},
			done:   make(chan struct{}),
		}
		g.queue.QueueBroadcast(b)
		t := time.NewTimer(timeout / 2)
		select {
		case <-b.done:
		case <-t.C:
			g.log.Warn("leave intent not fully broadcast before timeout")
		}
		t.Stop()
	}
	remaining := max(time.Until(deadline), time.Millisecond)
	if err := ml.Leave(remaining); err != nil {
		return fmt.Errorf("gossip: leave: %w", err)
	}
	g.log.Info("left the cluster", "node", g.id)
	return nil
}

// Shutdown stops gossip without telling anyone (call Leave first for a
// graceful exit) and closes every subscription. It is idempotent.
func (g *Gossip) Shutdown() error {
	g.life.Lock()
	defer g.life.Unlock()
	g.shutdownOnce.Do(func() {
		if err := g.ml.Load().Shutdown(); err != nil {
			g.shutdownErr = fmt.Errorf("gossip: shutdown: %w", err)
		}
		g.mu.Lock()
		g.closed = true
		subs := g.subs
		g.subs = nil
		g.mu.Unlock()
		for s := range subs {
			s.close()
		}
		if g.coll != nil {
			g.registry.Unregister(g.coll)
		}
	})
	return g.shutdownErr
}

func (g *Gossip) isClosed() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.closed
}
