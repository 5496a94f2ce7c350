package controlapi_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/shoal-dev/shoal/api"
	"github.com/shoal-dev/shoal/clock"
	"github.com/shoal-dev/shoal/manager/admission"
	"github.com/shoal-dev/shoal/manager/ca"
	"github.com/shoal-dev/shoal/manager/controlapi"
	"github.com/shoal-dev/shoal/store"
)

const clusterID = "cluster1"

// fakeRaft records membership changes; the leader and voters are set by the test.
type fakeRaft struct {
	mu         sync.Mutex
	leader     bool
	leaderID   string
	voters     []string
	added      [][2]string // id, addr
	removed    []string
	removeErr  error
	votersErr  error
	leaderAddr string
	// watched and gen follow leaderID for LeaderWatch; changed closes when it moves.
	watched string
	gen     uint64
	changed chan struct{}
	// staleLeader is a leader this follower has not heard from for long.
	staleLeader string
}

func (r *fakeRaft) LeaderWatch() controlapi.Leadership {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.changed == nil {
		r.changed = make(chan struct{})
	}
	if r.gen == 0 || r.watched != r.leaderID {
		r.watched = r.leaderID
		r.gen++
		close(r.changed)
		r.changed = make(chan struct{})
	}
	return controlapi.Leadership{ID: r.leaderID, Gen: r.gen, Changed: r.changed}
}

// setLeader changes the leader and wakes the calls waiting for a change.
func (r *fakeRaft) setLeader(id string, leading bool) {
	r.mu.Lock()
	r.leaderID, r.leader = id, leading
	r.mu.Unlock()
	r.LeaderWatch()
}

// SinceContact is an hour while staleLeader leads, else nothing.
func (r *fakeRaft) SinceContact() time.Duration {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.staleLeader != "" && r.leaderID == r.staleLeader {
		return time.Hour
	}
	return 0
}

func (r *fakeRaft) Barrier(context.Context) error { return nil }

func (r *fakeRaft) IsLeader() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.leader
}

func (r *fakeRaft) Leader() (string, string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.leaderID, r.leaderAddr
}

func (r *fakeRaft) AddVoter(_ context.Context, id, addr string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.added = append(r.added, [2]string{id, addr})
	if !slices.Contains(r.voters, id) {
		r.voters = append(r.voters, id)
	}
	return nil
}

func (r *fakeRaft) RemoveServer(_ context.Context, id string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.removed = append(r.removed, id)
	if r.removeErr != nil {
		return r.removeErr
	}
	r.voters = slices.DeleteFunc(r.voters, func(v string) bool { return v == id })
	return nil
}

func (r *fakeRaft) Voters() ([]string, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.voters), r.votersErr
}

func (r *fakeRaft) Removed() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.removed)
}

func (r *fakeRaft) Added() [][2]string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.added)
}

// fakeGossip says a member is alive when the test put it in the map.
type fakeGossip struct {
	mu    sync.Mutex
	alive map[string]bool
}

func (g *fakeGossip) Alive(id string) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.alive[id]
}

func (g *fakeGossip) set(id string, alive bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.alive == nil {
		g.alive = map[string]bool{}
	}
	g.alive[id] = alive
}

// fakeDispatcher records which node each heartbeat was for.
type fakeDispatcher struct {
	mu   sync.Mutex
	seen []string
}

func (d *fakeDispatcher) Heartbeat(_ context.Context, nodeID, _ string, hb *api.Heartbeat) (api.HeartbeatResponse, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if hb == nil {
		nodeID += " (empty)"
	}
	d.seen = append(d.seen, nodeID)
	return api.HeartbeatResponse{Role: api.RoleWorker, Availability: api.AvailabilityActive, Period: time.Second}, nil
}

func (d *fakeDispatcher) Assignments(context.Context, string, uint64, string) (api.Assignments, error) {
	return api.Assignments{}, nil
}

func (d *fakeDispatcher) ReportStatus(context.Context, string, []api.TaskStatusUpdate) error {
	return nil
}

func (d *fakeDispatcher) Seen() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return slices.Clone(d.seen)
}

// fixture is one cluster: a real root CA, tokens, and the real store
// holding the cluster object.
type fixture struct {
	t     *testing.T
	clk   *clock.Fake
	log   *slog.Logger
	store *store.Store
	root  *ca.RootCA
	adm   *admission.Admission
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	// crypto/tls checks certificates against the wall clock.
	clk := clock.NewFake(time.Now())
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	root, err := ca.NewRootCA(clusterID, clk.Now())
	if err != nil {
		t.Fatalf("NewRootCA: %v", err)
	}
	keyPEM, err := root.KeyPEM()
	if err != nil {
		t.Fatalf("KeyPEM: %v", err)
	}
	workerToken := newToken(t, root)
	managerToken := newToken(t, root)
	st := store.New(clk, log)
	c := &api.Cluster{
		ID:           clusterID,
		CACertPEM:    string(root.CertPEM),
		CAKeyPEM:     string(keyPEM),
		WorkerToken:  workerToken,
		ManagerToken: managerToken,
		GossipKey:    []byte("0123456789abcdef0123456789abcdef"),
	}
	if err := st.Update(context.Background(), func(tx *store.Tx) error { return tx.PutCluster(c) }); err != nil {
		t.Fatalf("put cluster: %v", err)
	}
	adm := admission.New(admission.Config{Store: st, Clock: clk, Logger: log,
		JoinBurst: admission.DefaultJoinBurst, JoinRate: admission.DefaultJoinRate})
	return &fixture{t: t, clk: clk, log: log, store: st, root: root, adm: adm}
}

func newToken(t *testing.T, root *ca.RootCA) string {
	t.Helper()
	tok, err := ca.NewJoinToken(ca.Digest(root.Cert))
	if err != nil {
		t.Fatalf("NewJoinToken: %v", err)
	}
	return tok
}

func (f *fixture) cluster() *api.Cluster {
	var c *api.Cluster
	f.store.View(func(tx store.ReadTx) { c = tx.Cluster() })
	return c
}

// addNode stores a node; apiAddr is its API endpoint (managers need one to be forwarded to).
func (f *fixture) addNode(id, hostname string, role api.NodeRole, state api.NodeState) {
	f.t.Helper()
	n := &api.Node{
		ID:          id,
		Spec:        api.NodeSpec{Role: role, Availability: api.AvailabilityActive},
		Status:      api.NodeStatus{State: state, Addr: "127.0.0.1"},
		Description: api.NodeDescription{Hostname: hostname},
		Endpoints:   api.Endpoints{Gossip: "127.0.0.1:7946"},
	}
	if role == api.RoleManager {
		n.Endpoints.API = "127.0.0.1:1" // nothing listens: set a real one with setAPI to forward
		n.Endpoints.Raft = "127.0.0.1:4242"
	}
	f.update(func(tx *store.Tx) error { return tx.PutNode(n) })
}

func (f *fixture) setAPI(id, addr string) {
	f.t.Helper()
	f.update(func(tx *store.Tx) error {
		n := tx.Node(id)
		n.Endpoints.API = addr
		return tx.PutNode(n)
	})
}

func (f *fixture) update(fn func(tx *store.Tx) error) {
	f.t.Helper()
	if err := f.store.Update(context.Background(), fn); err != nil {
		f.t.Fatalf("store update: %v", err)
	}
}

func (f *fixture) node(id string) *api.Node {
	var n *api.Node
	f.store.View(func(tx store.ReadTx) { n = tx.Node(id) })
	return n
}

func (f *fixture) nodeCount() int {
	var n int
	f.store.View(func(tx store.ReadTx) { n = len(tx.Nodes()) })
	return n
}

// cert issues a node certificate for id and role from the fixture's CA.
func (f *fixture) cert(id string, role api.NodeRole) tls.Certificate {
	f.t.Helper()
	return issueCert(f.t, f.root, ca.Identity{NodeID: id, Role: string(role), ClusterID: clusterID}, f.clk.Now())
}

func issueCert(t *testing.T, root *ca.RootCA, id ca.Identity, now time.Time) tls.Certificate {
	t.Helper()
	keyPEM, err := ca.NewKey()
	if err != nil {
		t.Fatalf("NewKey: %v", err)
	}
	csr, err := ca.NewCSR(keyPEM)
	if err != nil {
		t.Fatalf("NewCSR: %v", err)
	}
	certPEM, err := root.Sign(csr, id, []net.IP{net.ParseIP("127.0.0.1")}, now, 0)
	if err != nil {
		t.Fatalf("Sign: %v", err)
	}
	c, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatalf("X509KeyPair: %v", err)
	}
	return c
}

func newCSR(t *testing.T) string {
	t.Helper()
	keyPEM, err := ca.NewKey()
	if err != nil {
		t.Fatalf("NewKey: %v", err)
	}
	csr, err := ca.NewCSR(keyPEM)
	if err != nil {
		t.Fatalf("NewCSR: %v", err)
	}
	return string(csr)
}

// manager is one API server of the fixture's cluster, served over real TLS
// (ca.ServerTLS) and on a plain "local socket" stand-in (LocalHandler).
type manager struct {
	f      *fixture
	id     string
	raft   *fakeRaft
	gossip *fakeGossip
	disp   *fakeDispatcher
	srv    *controlapi.Server
	tls    *httptest.Server
	local  *httptest.Server
}

// startManager serves a manager with node ID id; wrap, if given, sees every
// TLS request before the server does.
func (f *fixture) startManager(id string, r *fakeRaft, wrap func(http.Handler) http.Handler) *manager {
	f.t.Helper()
	cert := f.cert(id, api.RoleManager)
	m := &manager{f: f, id: id, raft: r, gossip: &fakeGossip{}, disp: &fakeDispatcher{}}
	m.srv = controlapi.New(controlapi.Config{
		NodeID:     id,
		Store:      f.store,
		Raft:       r,
		Gossip:     m.gossip,
		Dispatcher: m.disp,
		Admission:  f.adm,
		ForwardTLS: ca.ClientTLS(f.root.Pool(), &cert, ca.RoleManager),
		LeaderWait: 100 * time.Millisecond, // no election ends in these tests
		Clock:      f.clk,
		Logger:     f.log,
	})
	h := m.srv.Handler()
	if wrap != nil {
		h = wrap(h)
	}
	m.tls = httptest.NewUnstartedServer(h)
	m.tls.TLS = ca.ServerTLS(f.root.Pool(), cert)
	m.tls.StartTLS()
	f.t.Cleanup(m.tls.Close)
	m.local = httptest.NewServer(m.srv.LocalHandler())
	f.t.Cleanup(m.local.Close)
	return m
}

// addr is the host:port of the manager's TLS listener.
func (m *manager) addr() string { return m.tls.Listener.Addr().String() }

// client calls a manager.
type client struct {
	t    *testing.T
	base string
	http *http.Client
}

// as returns a client presenting cert (nil: anonymous) over TLS.
func (m *manager) as(cert *tls.Certificate) *client {
	m.f.t.Helper()
	tr := &http.Transport{TLSClientConfig: ca.ClientTLS(m.f.root.Pool(), cert, ca.RoleManager)}
	m.f.t.Cleanup(tr.CloseIdleConnections)
	return &client{t: m.f.t, base: "https://" + m.addr(), http: &http.Client{Transport: tr}}
}

// asNode returns a client with a fresh certificate for id and role.
func (m *manager) asNode(id string, role api.NodeRole) *client {
	cert := m.f.cert(id, role)
	return m.as(&cert)
}

// admin returns a client of the local socket.
func (m *manager) admin() *client {
	return &client{t: m.f.t, base: m.local.URL, http: m.local.Client()}
}

type answer struct {
	code   int
	body   []byte
	header http.Header
}

func (a answer) message() string {
	var e api.Error
	_ = json.Unmarshal(a.body, &e)
	return e.Message
}

func (a answer) decode(t *testing.T, v any) {
	t.Helper()
	if err := json.Unmarshal(a.body, v); err != nil {
		t.Fatalf("decode answer %s: %v", a.body, err)
	}
}

// do sends body: nil for none, []byte as is, anything else as JSON.
func (c *client) do(method, path string, body any) answer {
	c.t.Helper()
	return c.doHeader(method, path, body, nil)
}

func (c *client) doHeader(method, path string, body any, header http.Header) answer {
	c.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case []byte:
		rd = bytes.NewReader(b)
	default:
		data, err := json.Marshal(b)
		if err != nil {
			c.t.Fatalf("encode body: %v", err)
		}
		rd = bytes.NewReader(data)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second) // guards against a hang
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		c.t.Fatalf("new request: %v", err)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := c.http.Do(req)
	if err != nil {
		c.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		c.t.Fatalf("%s %s: read answer: %v", method, path, err)
	}
	return answer{code: resp.StatusCode, body: data, header: resp.Header}
}

// want fails the test unless the answer has code; it returns the answer.
func want(t *testing.T, a answer, code int) answer {
	t.Helper()
	if a.code != code {
		t.Fatalf("got %d %s, want %d", a.code, strings.TrimSpace(string(a.body)), code)
	}
	return a
}

// leaderFixture is the common setup: manager m1 leads and is the only voter.
func leaderFixture(t *testing.T) (*fixture, *manager) {
	t.Helper()
	f := newFixture(t)
	f.addNode("m1", "host-m1", api.RoleManager, api.NodeStateReady)
	m := f.startManager("m1", &fakeRaft{leader: true, leaderID: "m1", voters: []string{"m1"}}, nil)
	return f, m
}
