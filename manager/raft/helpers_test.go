package raft

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"math/big"
	"net"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	hraft "github.com/hashicorp/raft"
	"github.com/prometheus/client_golang/prometheus"
)

// Test timings: short, but with room for -race on two busy cores.
const (
	testHeartbeat = 300 * time.Millisecond
	testLease     = 200 * time.Millisecond
	testWait      = 10 * time.Second // upper bound for polls; never reached when all is well
)

// --- certificates ---

type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pool *x509.CertPool
}

func newTestCA(t *testing.T, name string) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &testCA{cert: cert, key: key, pool: pool}
}

var serial = struct {
	sync.Mutex
	n int64
}{n: 1}

// issue returns a leaf certificate for a manager node, valid as client and server.
func (ca *testCA) issue(t *testing.T, nodeID string) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial.Lock()
	serial.n++
	sn := serial.n
	serial.Unlock()
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(sn),
		Subject:      pkix.Name{CommonName: nodeID, OrganizationalUnit: []string{"manager"}},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// tlsConfig is built the way the manager builds it: mutual TLS, and since peers are
// dialled by IP, chain verification done in VerifyConnection against trusted.
func tlsConfig(cert tls.Certificate, trusted *x509.CertPool) *tls.Config {
	return &tls.Config{
		MinVersion:         tls.VersionTLS13,
		Certificates:       []tls.Certificate{cert},
		ClientCAs:          trusted,
		ClientAuth:         tls.RequireAndVerifyClientCert,
		InsecureSkipVerify: true,
		VerifyConnection: func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return errors.New("no peer certificate")
			}
			inter := x509.NewCertPool()
			for _, c := range cs.PeerCertificates[1:] {
				inter.AddCert(c)
			}
			_, err := cs.PeerCertificates[0].Verify(x509.VerifyOptions{
				Roots:         trusted,
				Intermediates: inter,
				KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
			})
			return err
		},
	}
}

// --- logging ---

// testLogger writes to the test's output until the test ends, then drops lines, since
// transport goroutines may still log while a closed node winds down.
func testLogger(t *testing.T) *slog.Logger {
	t.Helper()
	w := &testWriter{w: t.Output()}
	t.Cleanup(w.stop) // registered first, so it runs after the nodes' cleanups
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

type testWriter struct {
	mu   sync.Mutex
	w    io.Writer
	done bool
}

func (w *testWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.done {
		return len(p), nil
	}
	return w.w.Write(p)
}

func (w *testWriter) stop() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.done = true
}

// --- FSM ---

var errRejected = errors.New("testfsm: rejected")

// testFSM keeps the applied entries in order. "reject" is refused with errRejected.
type testFSM struct {
	mu       sync.Mutex
	entries  []string
	restores int
}

func (f *testFSM) Apply(l *hraft.Log) any {
	if string(l.Data) == "reject" {
		return errRejected
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.entries = append(f.entries, string(l.Data))
	return len(f.entries)
}

func (f *testFSM) Snapshot() (hraft.FSMSnapshot, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return fsmSnapshot(slices.Clone(f.entries)), nil
}

func (f *testFSM) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	var entries []string
	if err := json.NewDecoder(rc).Decode(&entries); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.entries = entries
	f.restores++
	return nil
}

func (f *testFSM) Entries() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.entries)
}

func (f *testFSM) Restores() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.restores
}

type fsmSnapshot []string

func (s fsmSnapshot) Persist(sink hraft.SnapshotSink) error {
	if err := json.NewEncoder(sink).Encode([]string(s)); err != nil {
		sink.Cancel()
		return err
	}
	return sink.Close()
}

func (s fsmSnapshot) Release() {}

// --- nodes and clusters ---

type testNode struct {
	*Raft
	cfg Config
	fsm *testFSM
	reg *prometheus.Registry
}

// startNode opens a node on a free loopback port with the short test timings.
func startNode(t *testing.T, id string, tlsConf *tls.Config, logger *slog.Logger, mod ...func(*Config)) *testNode {
	t.Helper()
	cfg := Config{
		NodeID:             id,
		DataDir:            filepath.Join(t.TempDir(), "raft"),
		BindAddr:           "127.0.0.1:0",
		TLS:                tlsConf,
		Logger:             logger.With("node", id),
		HeartbeatTimeout:   testHeartbeat,
		ElectionTimeout:    testHeartbeat,
		LeaderLeaseTimeout: testLease,
		CommitTimeout:      5 * time.Millisecond,
	}
	for _, m := range mod {
		m(&cfg)
	}
	n := &testNode{cfg: cfg}
	n.open(t)
	// Later opens reuse the address peers know.
	n.cfg.BindAddr = n.Addr()
	return n
}

func (n *testNode) open(t *testing.T) {
	t.Helper()
	n.fsm = &testFSM{}
	n.reg = prometheus.NewRegistry()
	n.cfg.FSM = n.fsm
	n.cfg.Registry = n.reg
	r, err := Open(n.cfg)
	if err != nil {
		t.Fatalf("open %s: %v", n.cfg.NodeID, err)
	}
	n.Raft = r
	t.Cleanup(func() { r.Shutdown() })
}

// restart shuts the node down and opens it again on the same data dir and address.
func (n *testNode) restart(t *testing.T) {
	t.Helper()
	if err := n.Shutdown(); err != nil {
		t.Fatalf("shutdown %s: %v", n.cfg.NodeID, err)
	}
	n.open(t)
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(testWait)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// waitLeader waits until exactly one of nodes leads and the others know it.
func waitLeader(t *testing.T, nodes ...*testNode) *testNode {
	t.Helper()
	var leader *testNode
	waitFor(t, "a leader", func() bool {
		leader = nil
		for _, n := range nodes {
			if n.IsLeader() {
				if leader != nil {
					return false
				}
				leader = n
			}
		}
		if leader == nil {
			return false
		}
		for _, n := range nodes {
			if id, _ := n.Leader(); id != leader.ID() {
				return false
			}
		}
		return true
	})
	return leader
}

func waitEntries(t *testing.T, want []string, nodes ...*testNode) {
	t.Helper()
	for _, n := range nodes {
		waitFor(t, n.ID()+" to apply "+formatList(want), func() bool {
			return slices.Equal(n.fsm.Entries(), want)
		})
	}
}

func formatList(s []string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

func ctxTimeout(t *testing.T, d time.Duration) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// newCluster starts n TLS nodes from one CA, bootstraps the first and adds the others.
func newCluster(t *testing.T, size int) []*testNode {
	t.Helper()
	logger := testLogger(t)
	ca := newTestCA(t, "cluster-ca")
	var nodes []*testNode
	for i := range size {
		id := "m" + string(rune('0'+i))
		nodes = append(nodes, startNode(t, id, tlsConfig(ca.issue(t, id), ca.pool), logger))
	}
	if err := nodes[0].Bootstrap(); err != nil {
		t.Fatalf("bootstrap: %v", err)
	}
	waitLeader(t, nodes[0])
	for i, n := range nodes[1:] {
		// With two voters of which one is new, a busy machine can cost the leader its
		// lease before the newcomer answers: retry on whoever leads (adding a voter that
		// is already there is a no-op).
		members := nodes[:i+2]
		var err error
		for range 5 {
			var leader *testNode
			waitFor(t, "a leader to add "+n.ID(), func() bool {
				for _, m := range members {
					if m.IsLeader() {
						leader = m
						return true
					}
				}
				return false
			})
			if err = leader.AddVoter(ctxTimeout(t, 5*time.Second), n.ID(), n.Addr()); err == nil {
				break
			}
			t.Logf("add voter %s on %s: %v (retrying)", n.ID(), leader.ID(), err)
		}
		if err != nil {
			t.Fatalf("add voter %s: %v", n.ID(), err)
		}
	}
	waitLeader(t, nodes...)
	return nodes
}

// gauge reads one unlabelled metric from a node's registry; ok is false if absent.
func metricValue(t *testing.T, n *testNode, name string) (float64, bool) {
	t.Helper()
	mfs, err := n.reg.Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name || len(mf.GetMetric()) == 0 {
			continue
		}
		m := mf.GetMetric()[0]
		switch {
		case m.GetGauge() != nil:
			return m.GetGauge().GetValue(), true
		case m.GetCounter() != nil:
			return m.GetCounter().GetValue(), true
		case m.GetHistogram() != nil:
			return float64(m.GetHistogram().GetSampleCount()), true
		}
	}
	return 0, false
}
