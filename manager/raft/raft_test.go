package raft

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	hraft "github.com/hashicorp/raft"
)

func TestClusterReplicationFailoverAndMembership(t *testing.T) {
	nodes := newCluster(t, 3)
	// m0 bootstrapped, but on a busy machine leadership may have moved since.
	lead := waitLeader(t, nodes...)
	var followers []*testNode
	for _, n := range nodes {
		if n != lead {
			followers = append(followers, n)
		}
	}
	f1, f2 := followers[0], followers[1]
	changes, _ := lead.LeaderChanges()
	if got := <-changes; !got {
		t.Fatalf("got first leader change %v on the leader, want true", got)
	}

	servers, err := lead.Servers()
	if err != nil {
		t.Fatalf("servers: %v", err)
	}
	want := []Server{{"m0", nodes[0].Addr(), true}, {"m1", nodes[1].Addr(), true}, {"m2", nodes[2].Addr(), true}}
	if !slices.Equal(servers, want) {
		t.Fatalf("got servers %v, want %v", servers, want)
	}

	t.Run("apply on leader reaches every FSM", func(t *testing.T) {
		resp, err := lead.Apply(ctxTimeout(t, 5*time.Second), []byte("a"))
		if err != nil {
			t.Fatalf("apply: %v", err)
		}
		if resp != 1 {
			t.Fatalf("got response %v, want 1", resp)
		}
		waitEntries(t, []string{"a"}, nodes...)
	})

	t.Run("FSM error is returned as the error", func(t *testing.T) {
		_, err := lead.Apply(ctxTimeout(t, 5*time.Second), []byte("reject"))
		if !errors.Is(err, errRejected) {
			t.Fatalf("got %v, want %v", err, errRejected)
		}
	})

	t.Run("follower refuses writes naming the leader", func(t *testing.T) {
		_, err := f1.Apply(ctxTimeout(t, 5*time.Second), []byte("x"))
		if !errors.Is(err, ErrNotLeader) {
			t.Fatalf("got %v, want %v", err, ErrNotLeader)
		}
		var nle *NotLeaderError
		if !errors.As(err, &nle) || nle.LeaderID != lead.ID() || nle.LeaderAddr != lead.Addr() {
			t.Fatalf("got %#v, want leader %s at %s", nle, lead.ID(), lead.Addr())
		}
		if err := f1.AddVoter(ctxTimeout(t, time.Second), "m9", "127.0.0.1:1"); !errors.Is(err, ErrNotLeader) {
			t.Fatalf("add voter on follower: got %v, want %v", err, ErrNotLeader)
		}
		if err := f2.RemoveServer(ctxTimeout(t, time.Second), lead.ID()); !errors.Is(err, ErrNotLeader) {
			t.Fatalf("remove server on follower: got %v, want %v", err, ErrNotLeader)
		}
	})

	t.Run("metrics", func(t *testing.T) {
		for _, c := range []struct {
			node *testNode
			name string
			want func(float64) bool
		}{
			{lead, "shoal_raft_leader", func(v float64) bool { return v == 1 }},
			{f1, "shoal_raft_leader", func(v float64) bool { return v == 0 }},
			{lead, "shoal_raft_voters", func(v float64) bool { return v == 3 }},
			{lead, "shoal_raft_term", func(v float64) bool { return v >= 1 }},
			{lead, "shoal_raft_commit_index", func(v float64) bool { return v >= 3 }},
			{lead, "shoal_raft_applied_index", func(v float64) bool { return v >= 3 }},
			{lead, "shoal_raft_leader_changes_total", func(v float64) bool { return v >= 1 }},
			{lead, "shoal_raft_apply_duration_seconds", func(v float64) bool { return v >= 2 }},
		} {
			got, ok := metricValue(t, c.node, c.name)
			if !ok || !c.want(got) {
				t.Errorf("%s on %s: got %v (present %v)", c.name, c.node.ID(), got, ok)
			}
		}
	})

	// The leader goes away: another is elected and writes work again, and
	// a follower's leader watch says so as soon as raft sees it.
	watch := f1.LeaderWatch()
	if watch.ID != lead.ID() {
		t.Fatalf("got leader %q in f1's watch, want %s", watch.ID, lead.ID())
	}
	if err := lead.Shutdown(); err != nil {
		t.Fatalf("shutdown: %v", err)
	}
	if err := lead.Shutdown(); err != nil {
		t.Fatalf("second shutdown: got %v, want nil", err)
	}
	if got, ok := <-changes; !ok || got {
		t.Fatalf("got leader change %v (open %v) after shutdown, want false", got, ok)
	}
	if _, ok := <-changes; ok {
		t.Fatal("got an open LeaderChanges channel after shutdown, want closed")
	}
	if _, err := lead.Apply(ctxTimeout(t, time.Second), []byte("x")); !errors.Is(err, ErrShutdown) {
		t.Fatalf("apply after shutdown: got %v, want %v", err, ErrShutdown)
	}

	leader := waitLeader(t, f1, f2)
	select {
	case <-watch.Changed:
	case <-ctxTimeout(t, 10*time.Second).Done():
		t.Fatal("f1's leader watch did not change after the leader stopped")
	}
	waitFor(t, "f1 watching the new leader", func() bool { return f1.LeaderWatch().ID == leader.ID() })
	if got := f1.LeaderWatch(); got.Gen <= watch.Gen {
		t.Errorf("got generation %d after a new leader, want more than %d", got.Gen, watch.Gen)
	}
	if _, err := leader.Apply(ctxTimeout(t, 5*time.Second), []byte("b")); err != nil {
		t.Fatalf("apply on new leader %s: %v", leader.ID(), err)
	}
	waitEntries(t, []string{"a", "b"}, f1, f2)

	// The old leader restarts from its data dir and catches up.
	lead.open(t)
	if !lead.HasExistingState() {
		t.Fatal("got HasExistingState false after restart, want true")
	}
	if err := lead.Bootstrap(); !errors.Is(err, ErrExistingState) {
		t.Fatalf("bootstrap after restart: got %v, want %v", err, ErrExistingState)
	}
	waitEntries(t, []string{"a", "b"}, lead)
	leader = waitLeader(t, nodes...)

	// Remove a follower.
	var gone *testNode
	for _, n := range nodes {
		if n != leader {
			gone = n
			break
		}
	}
	if err := leader.RemoveServer(ctxTimeout(t, 5*time.Second), gone.ID()); err != nil {
		t.Fatalf("remove %s: %v", gone.ID(), err)
	}
	servers, err = leader.Servers()
	if err != nil {
		t.Fatalf("servers: %v", err)
	}
	if len(servers) != 2 || slices.ContainsFunc(servers, func(s Server) bool { return s.ID == gone.ID() }) {
		t.Fatalf("got servers %v, want two without %s", servers, gone.ID())
	}
	if got, _ := metricValue(t, leader, "shoal_raft_voters"); got != 2 {
		t.Fatalf("got shoal_raft_voters %v, want 2", got)
	}
	if _, err := leader.Apply(ctxTimeout(t, 5*time.Second), []byte("c")); err != nil {
		t.Fatalf("apply after removal: %v", err)
	}
}

func TestQuorumLossDoesNotHang(t *testing.T) {
	nodes := newCluster(t, 3)
	leader := waitLeader(t, nodes...)
	for _, n := range nodes {
		if n == leader {
			continue
		}
		if err := n.Shutdown(); err != nil {
			t.Fatalf("shutdown %s: %v", n.ID(), err)
		}
	}

	// Whether the leader has stepped down yet or not, the call ends with a clear error.
	_, err := leader.Apply(ctxTimeout(t, time.Second), []byte("lost"))
	if !errors.Is(err, ErrNoQuorum) && !errors.Is(err, ErrNotLeader) {
		t.Fatalf("got %v, want %v or %v", err, ErrNoQuorum, ErrNotLeader)
	}

	waitFor(t, "the lone leader to step down", func() bool { return !leader.IsLeader() })
	_, err = leader.Apply(ctxTimeout(t, time.Second), []byte("lost"))
	if !errors.Is(err, ErrNotLeader) {
		t.Fatalf("got %v, want %v", err, ErrNotLeader)
	}
	if err := leader.Barrier(ctxTimeout(t, time.Second)); !errors.Is(err, ErrNotLeader) {
		t.Fatalf("barrier: got %v, want %v", err, ErrNotLeader)
	}
}

func TestApplyHonoursContext(t *testing.T) {
	logger := testLogger(t)
	n := startNode(t, "solo", nil, logger)
	if err := n.Bootstrap(); err != nil {
		t.Fatalf("bootstrap: %v", err)
	}
	waitLeader(t, n)

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := n.Apply(ctx, []byte("late")); !errors.Is(err, context.Canceled) {
		t.Fatalf("got %v, want %v", err, context.Canceled)
	}
	if _, err := n.Apply(context.Background(), []byte("ok")); err != nil {
		t.Fatalf("apply without deadline: %v", err)
	}
	if got := n.fsm.Entries(); !slices.Equal(got, []string{"ok"}) {
		t.Fatalf("got entries %v, want [ok]", got)
	}
}

// pendingFuture is a future raft never resolves, like an entry that cannot commit.
type pendingFuture struct{ block chan struct{} }

func (f pendingFuture) Error() error { <-f.block; return nil }

func TestWaitEndsWithContext(t *testing.T) {
	f := pendingFuture{block: make(chan struct{})}
	defer close(f.block)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	ctxErr, err := wait(ctx, f)
	if !errors.Is(ctxErr, context.DeadlineExceeded) || err != nil {
		t.Fatalf("got (%v, %v), want (%v, nil)", ctxErr, err, context.DeadlineExceeded)
	}
	if got := noQuorum("entry", ctxErr); !errors.Is(got, ErrNoQuorum) || !errors.Is(got, context.DeadlineExceeded) {
		t.Fatalf("got %v, want %v wrapping %v", got, ErrNoQuorum, context.DeadlineExceeded)
	}
}

func TestErrorMapping(t *testing.T) {
	n := startNode(t, "solo", nil, testLogger(t)) // not bootstrapped: no leader known
	other := errors.New("disk on fire")
	for _, c := range []struct {
		in   error
		want error
	}{
		{hraft.ErrNotLeader, ErrNotLeader},
		{hraft.ErrLeadershipTransferInProgress, ErrNotLeader},
		{hraft.ErrLeadershipLost, ErrNoQuorum},
		{hraft.ErrEnqueueTimeout, ErrNoQuorum},
		{hraft.ErrRaftShutdown, ErrShutdown},
		{hraft.ErrCantBootstrap, ErrExistingState},
		{other, other},
	} {
		t.Run(c.in.Error(), func(t *testing.T) {
			got := n.mapErr("apply", c.in)
			if !errors.Is(got, c.want) {
				t.Fatalf("got %v, want %v", got, c.want)
			}
			if !strings.HasPrefix(got.Error(), "raft: ") && !strings.HasPrefix(got.Error(), "apply: raft: ") {
				t.Fatalf("got message %q, want it to say raft", got)
			}
		})
	}
	if got := n.mapErr("apply", hraft.ErrNotLeader).Error(); !strings.Contains(got, "no leader known") {
		t.Fatalf("got %q, want it to say no leader is known", got)
	}
}

func TestRestartSnapshotAndRestore(t *testing.T) {
	logger := testLogger(t)
	n := startNode(t, "solo", nil, logger)
	if n.HasExistingState() {
		t.Fatal("got HasExistingState true on a new node, want false")
	}
	if err := n.Bootstrap(); err != nil {
		t.Fatalf("bootstrap: %v", err)
	}
	if err := n.Bootstrap(); !errors.Is(err, ErrExistingState) {
		t.Fatalf("second bootstrap: got %v, want %v", err, ErrExistingState)
	}
	waitLeader(t, n)

	var want []string
	apply := func(s string) {
		t.Helper()
		if _, err := n.Apply(ctxTimeout(t, 5*time.Second), []byte(s)); err != nil {
			t.Fatalf("apply %s: %v", s, err)
		}
		want = append(want, s)
	}
	for _, s := range []string{"a", "b", "c", "d"} {
		apply(s)
	}
	if err := n.raft.Snapshot().Error(); err != nil {
		t.Fatalf("snapshot: %v", err)
	}
	inSnapshot := slices.Clone(want)
	apply("e") // in the log only

	snaps, err := os.ReadDir(filepath.Join(n.cfg.DataDir, "snapshots"))
	if err != nil || len(snaps) != 1 {
		t.Fatalf("got snapshots %v (err %v), want 1", snaps, err)
	}
	if _, err := os.Stat(filepath.Join(n.cfg.DataDir, walDir, "wal-meta.db")); err != nil {
		t.Fatalf("wal: %v", err)
	}
	if fi, err := os.Stat(n.cfg.DataDir); err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("got data dir mode %v (err %v), want 0700", fi.Mode().Perm(), err)
	}

	n.restart(t)
	if !n.HasExistingState() {
		t.Fatal("got HasExistingState false after restart, want true")
	}
	if err := n.Bootstrap(); !errors.Is(err, ErrExistingState) {
		t.Fatalf("bootstrap after restart: got %v, want %v", err, ErrExistingState)
	}
	// Open restores the snapshot before returning; the log tail follows once committed.
	if got := n.fsm.Restores(); got != 1 {
		t.Fatalf("got %d restores, want 1", got)
	}
	if got := n.fsm.Entries(); !slices.Equal(got, inSnapshot) {
		t.Fatalf("got entries %v right after open, want the snapshot's %v", got, inSnapshot)
	}
	waitLeader(t, n)
	if err := n.Barrier(ctxTimeout(t, 5*time.Second)); err != nil {
		t.Fatalf("barrier: %v", err)
	}
	if got := n.fsm.Entries(); !slices.Equal(got, want) {
		t.Fatalf("got entries %v, want %v", got, want)
	}
}

func TestSnapshotThreshold(t *testing.T) {
	logger := testLogger(t)
	n := startNode(t, "solo", nil, logger, func(c *Config) {
		c.SnapshotThreshold = 4
		c.SnapshotInterval = 20 * time.Millisecond
	})
	if err := n.Bootstrap(); err != nil {
		t.Fatalf("bootstrap: %v", err)
	}
	waitLeader(t, n)
	for i := range 10 {
		if _, err := n.Apply(ctxTimeout(t, 5*time.Second), []byte{'a' + byte(i)}); err != nil {
			t.Fatalf("apply: %v", err)
		}
	}
	waitFor(t, "an automatic snapshot", func() bool {
		snaps, _ := os.ReadDir(filepath.Join(n.cfg.DataDir, "snapshots"))
		return len(snaps) > 0
	})
}

func TestForeignCAPeerIsRejected(t *testing.T) {
	logger := testLogger(t)
	ca := newTestCA(t, "cluster-ca")
	other := newTestCA(t, "other-ca")
	m0 := startNode(t, "m0", tlsConfig(ca.issue(t, "m0"), ca.pool), logger)
	if err := m0.Bootstrap(); err != nil {
		t.Fatalf("bootstrap: %v", err)
	}
	waitLeader(t, m0)
	if _, err := m0.Apply(ctxTimeout(t, 5*time.Second), []byte("a")); err != nil {
		t.Fatalf("apply: %v", err)
	}

	t.Run("client cert from another CA is refused by the listener", func(t *testing.T) {
		// The intruder trusts the cluster CA, so only the server's check can stop it; and
		// it presents its certificate even though the server asks for the cluster CA's.
		cert := other.issue(t, "intruder")
		conf := tlsConfig(cert, ca.pool)
		conf.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &cert, nil }
		d := tls.Dialer{Config: conf}
		c, err := d.DialContext(ctxTimeout(t, 5*time.Second), "tcp", m0.Addr())
		if err != nil {
			return // refused during the handshake: fine
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(5 * time.Second))
		_, err = c.Read(make([]byte, 1))
		var ne net.Error
		if err == nil || (errors.As(err, &ne) && ne.Timeout()) {
			t.Fatalf("got read error %v, want the server to reject the certificate", err)
		}
		if !strings.Contains(err.Error(), "certificate") {
			t.Fatalf("got read error %v, want a certificate alert", err)
		}
	})

	t.Run("peer from another CA cannot join", func(t *testing.T) {
		// The rogue trusts the cluster CA but the leader does not trust the rogue.
		rogue := startNode(t, "rogue", tlsConfig(other.issue(t, "rogue"), ca.pool), logger)
		// hashicorp/raft commits the change itself under the old one-voter configuration,
		// so AddVoter may succeed; what matters is that the rogue gets nothing.
		err := m0.AddVoter(ctxTimeout(t, time.Second), rogue.ID(), rogue.Addr())
		if err != nil && !errors.Is(err, ErrNoQuorum) && !errors.Is(err, ErrNotLeader) {
			t.Fatalf("add voter: got %v, want nil, %v or %v", err, ErrNoQuorum, ErrNotLeader)
		}
		// Two voters need the rogue: the leader steps down only after failing to reach it
		// for a whole lease; had TLS let it in, it would have been replicated by then.
		waitFor(t, "m0 to lose its lease", func() bool { return !m0.IsLeader() })
		if got := rogue.raft.LastIndex(); got != 0 {
			t.Fatalf("got rogue last index %d, want 0 (nothing replicated)", got)
		}
		if got := rogue.fsm.Entries(); len(got) != 0 {
			t.Fatalf("got rogue entries %v, want none", got)
		}
		if _, err := m0.Apply(ctxTimeout(t, time.Second), []byte("b")); err == nil {
			t.Fatal("got nil error applying without the rogue, want one")
		}
	})
}

func TestOpenValidatesConfig(t *testing.T) {
	base := func() Config {
		return Config{NodeID: "n", DataDir: t.TempDir(), BindAddr: "127.0.0.1:0", FSM: &testFSM{}}
	}
	for _, c := range []struct {
		name string
		mod  func(*Config)
	}{
		{"no node id", func(c *Config) { c.NodeID = "" }},
		{"no data dir", func(c *Config) { c.DataDir = "" }},
		{"no bind addr", func(c *Config) { c.BindAddr = "" }},
		{"no fsm", func(c *Config) { c.FSM = nil }},
		{"unspecified advertise", func(c *Config) { c.BindAddr = "0.0.0.0:0" }},
		{"lease above heartbeat", func(c *Config) { c.LeaderLeaseTimeout = time.Second }},
	} {
		t.Run(c.name, func(t *testing.T) {
			cfg := base()
			c.mod(&cfg)
			r, err := Open(cfg)
			if err == nil {
				r.Shutdown()
				t.Fatal("got nil error, want one")
			}
		})
	}
}

func TestSecondOpenOfDataDirFails(t *testing.T) {
	logger := testLogger(t)
	n := startNode(t, "solo", nil, logger)
	cfg := n.cfg
	cfg.BindAddr = "127.0.0.1:0"
	cfg.FSM = &testFSM{}
	cfg.Registry = nil
	if r, err := Open(cfg); err == nil {
		r.Shutdown()
		t.Fatal("got nil error opening a data dir in use, want one")
	}
}

func TestMetricsRegistryReuseAfterShutdown(t *testing.T) {
	logger := testLogger(t)
	n := startNode(t, "solo", nil, logger)
	cfg := n.cfg
	if err := n.Shutdown(); err != nil {
		t.Fatalf("shutdown: %v", err)
	}
	r, err := Open(cfg) // same registry: the metrics were unregistered
	if err != nil {
		t.Fatalf("reopen on the same registry: %v", err)
	}
	r.Shutdown()
}
