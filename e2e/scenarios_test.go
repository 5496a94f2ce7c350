package e2e

import (
	"context"
	"crypto/sha256"
	"encoding/base32"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/shoal-dev/shoal/api"
)

// downWithin is how soon a stopped or killed node must show down.
const downWithin = 5 * time.Second

// report logs a measurement and prints it to stdout too, so it shows in
// `make e2e` output without -v.
func report(t testing.TB, format string, args ...any) {
	t.Helper()
	t.Logf(format, args...)
	fmt.Printf(format+"\n", args...)
}

// write is `node update --label-add k=v NODE` through h, bounded by timeout.
func write(h *Host, timeout time.Duration, node, kv string) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	_, err := h.ShoalCtx(ctx, "node", "update", "--label-add", kv, node)
	return err
}

// hasLabels checks through h that node has every label in want.
func hasLabels(h *Host, node string, want map[string]string) error {
	n, err := h.Inspect(node)
	if err != nil {
		return err
	}
	for k, v := range want {
		if got := n.Spec.Labels[k]; got != v {
			return fmt.Errorf("%s: node %s label %s: got %q, want %q (labels %v)", h.Name, node, k, got, v, n.Spec.Labels)
		}
	}
	return nil
}

// waitDown polls node ls through the given managers until the node with
// hostname shows down, and returns how long that took since start.
func waitDown(via []*Host, hostname string, start time.Time, timeout time.Duration) (time.Duration, api.NodeView, error) {
	var seen api.NodeView
	_, err := poll(timeout, func() error {
		var errs []string
		for _, m := range via {
			nodes, err := m.Nodes()
			if err != nil {
				errs = append(errs, err.Error())
				continue
			}
			n, ok := Node(nodes, hostname)
			if !ok {
				return fmt.Errorf("%s: node ls has no %s: %s", m.Name, hostname, summary(nodes))
			}
			seen = n
			if n.Status.State == api.NodeStateDown {
				return nil
			}
			errs = append(errs, fmt.Sprintf("%s: %s is %q", m.Name, hostname, n.Status.State))
		}
		return fmt.Errorf("%s", strings.Join(errs, "; "))
	})
	return time.Since(start), seen, err
}

func others(all []*Host, h *Host) []*Host {
	var out []*Host
	for _, x := range all {
		if x != h {
			out = append(out, x)
		}
	}
	return out
}

// TestCluster runs the scenarios that share one 3-manager, 2-worker
// cluster, in order: each starts by waiting for the cluster to settle.
func TestCluster(t *testing.T) {
	requireEnv(t)
	shoalBin(t) // build first, so the start-up time below is the cluster's
	start := time.Now()
	c := NewCluster(t, 3, 2)
	report(t, "cluster of 3 managers and 2 workers ready: %.2fs", time.Since(start).Seconds())
	// labels written by the scenarios, checked again after restarts.
	labels := map[string]map[string]string{}
	record := func(node, k, v string) {
		if labels[node] == nil {
			labels[node] = map[string]string{}
		}
		labels[node][k] = v
	}
	settled := func(t *testing.T) {
		t.Helper()
		for _, m := range c.Managers {
			eventually(t, serveTimeout, func() error {
				if err := c.Settled(m); err != nil {
					return fmt.Errorf("via %s: %w", m.Name, err)
				}
				return nil
			})
		}
	}

	// working is the weaker precondition of the later scenarios, so one
	// wrong manager status does not hide what they test: every manager
	// serves and names the same leader, and the leader lists every node ready.
	working := func(t *testing.T) {
		t.Helper()
		eventually(t, serveTimeout, func() error {
			leader, err := c.Leader(c.Managers...)
			if err != nil {
				return err
			}
			for _, m := range c.Managers {
				info, err := m.Info()
				if err != nil {
					return err
				}
				if info.LeaderID != c.IDs[leader.Name] {
					return fmt.Errorf("%s: leader %q, %s says %q", m.Name, info.LeaderID, leader.Name, c.IDs[leader.Name])
				}
			}
			nodes, err := leader.Nodes()
			if err != nil {
				return err
			}
			for _, n := range nodes {
				if n.Status.State != api.NodeStateReady {
					return fmt.Errorf("via leader %s: %s is %q: %s", leader.Name, n.Description.Hostname, n.Status.State, summary(nodes))
				}
			}
			if got, want := len(nodes), len(c.Hosts()); got != want {
				return fmt.Errorf("via leader %s: got %d nodes, want %d", leader.Name, got, want)
			}
			return nil
		})
	}

	t.Run("bootstrap", func(t *testing.T) {
		defer c.Net.Bind(t)()
		settled(t)
		var leaderIDs []string
		for _, m := range c.Managers {
			nodes, err := m.Nodes()
			if err != nil {
				t.Fatal(err)
			}
			for _, n := range nodes {
				if n.Description.Engine.Available {
					t.Errorf("via %s: node %s engine available: got true, want false (containerd address does not exist)", m.Name, n.Description.Hostname)
				}
				if want := c.IDs[n.Description.Hostname]; n.ID != want {
					t.Errorf("via %s: node %s id: got %q, want %q (from its info)", m.Name, n.Description.Hostname, n.ID, want)
				}
			}
			out, err := m.Shoal("node", "ls", "-q")
			if err != nil {
				t.Fatal(err)
			}
			if got, want := len(strings.Fields(out)), 5; got != want {
				t.Errorf("via %s: node ls -q: got %d ids, want %d: %q", m.Name, got, want, out)
			}
		}
		for _, h := range c.Hosts() {
			info, err := h.Info()
			if err != nil {
				t.Fatal(err)
			}
			wantRole := api.RoleWorker
			if strings.HasPrefix(h.Name, "m") {
				wantRole = api.RoleManager
			}
			if info.Role != wantRole {
				t.Errorf("%s: info role: got %q, want %q", h.Name, info.Role, wantRole)
			}
			if info.Engine.Available {
				t.Errorf("%s: info engine available: got true, want false", h.Name)
			}
			if info.Addr != h.IP && !strings.HasPrefix(info.Addr, h.IP+":") {
				t.Errorf("%s: info addr: got %q, want %s", h.Name, info.Addr, h.IP)
			}
			if wantRole == api.RoleManager {
				leaderIDs = append(leaderIDs, info.LeaderID)
			}
		}
		for _, id := range leaderIDs[1:] {
			if id != leaderIDs[0] {
				t.Errorf("managers disagree on the leader: %v", leaderIDs)
			}
		}
		if _, err := c.Workers[0].Shoal("node", "ls"); err != nil {
			t.Logf("node ls on a worker fails as in swarm: %v", err)
		}
	})

	t.Run("leader_failover", func(t *testing.T) {
		defer c.Net.Bind(t)()
		working(t)
		leader, err := c.Leader(c.Managers...)
		if err != nil {
			t.Fatal(err)
		}
		survivors := others(c.Managers, leader)
		target := c.IDs[c.Workers[0].Name]
		oldID := c.IDs[leader.Name]
		t.Logf("killing leader %s (%s)", leader.Name, oldID)

		type down struct {
			d   time.Duration
			n   api.NodeView
			err error
		}
		downc := make(chan down, 1)
		killed := time.Now()
		leader.Daemon().Kill()
		go func() {
			d, n, err := waitDown(survivors, leader.Name, killed, 30*time.Second)
			downc <- down{d, n, err}
		}()

		var elected time.Duration
		var newLeader string
		var writer *Host
		_, err = poll(60*time.Second, func() error {
			var errs []string
			for _, m := range survivors {
				if elected == 0 {
					if info, err := m.Info(); err == nil && info.LeaderID != "" && info.LeaderID != oldID {
						elected = time.Since(killed)
						newLeader = fmt.Sprintf("%s says %s", m.Name, info.LeaderID)
						if h := c.HostByID(info.LeaderID); h != nil {
							newLeader += " (" + h.Name + ")"
						}
					}
				}
				if err := write(m, 5*time.Second, target, "failover=1"); err != nil {
					errs = append(errs, err.Error())
					continue
				}
				writer = m
				return nil
			}
			return fmt.Errorf("%s", strings.Join(errs, "; "))
		})
		if err != nil {
			t.Fatalf("no successful write within 60s of killing the leader: %v", err)
		}
		failover := time.Since(killed)
		record(target, "failover", "1")
		report(t, "leader failover: %.2fs (kill to first successful write)", failover.Seconds())
		report(t, "new leader reported after %.2fs (%s); first write through %s", elected.Seconds(), newLeader, writer.Name)

		dn := <-downc
		if dn.err != nil {
			t.Errorf("killed leader %s never showed down: %v", leader.Name, dn.err)
		} else {
			report(t, "killed manager shown down: %.2fs (manager_status %q)", dn.d.Seconds(), dn.n.ManagerStatus)
			if dn.d > downWithin {
				t.Errorf("killed manager %s took %.2fs to show down, want at most %s", leader.Name, dn.d.Seconds(), downWithin)
			}
		}
		for _, m := range survivors {
			eventually(t, 10*time.Second, func() error { return hasLabels(m, target, labels[target]) })
		}

		restarted := time.Now()
		leader.Agent()
		c.WaitServing(t, leader)
		eventually(t, serveTimeout, func() error {
			for _, m := range c.Managers {
				if err := c.Settled(m); err != nil {
					return fmt.Errorf("via %s: %w", m.Name, err)
				}
				nodes, _ := m.Nodes()
				if n, _ := Node(nodes, leader.Name); n.ManagerStatus != api.ManagerReachable {
					return fmt.Errorf("via %s: restarted %s is %q, want Reachable", m.Name, leader.Name, n.ManagerStatus)
				}
			}
			return nil
		})
		report(t, "killed leader rejoined as Reachable: %.2fs after shoal agent", time.Since(restarted).Seconds())
		eventually(t, 10*time.Second, func() error { return hasLabels(leader, target, labels[target]) })
	})

	t.Run("restart_all_managers", func(t *testing.T) {
		defer c.Net.Bind(t)()
		working(t)
		target := c.IDs[c.Workers[1].Name]
		eventually(t, 10*time.Second, func() error { return write(c.Managers[0], 5*time.Second, target, "restart=before") })
		record(target, "restart", "before")

		errc := make(chan error, len(c.Managers))
		for _, m := range c.Managers {
			go func() { errc <- m.Daemon().Stop() }()
		}
		for range c.Managers {
			if err := <-errc; err != nil {
				t.Errorf("SIGTERM: %v", err)
			}
		}
		started := time.Now()
		for _, m := range c.Managers {
			m.Agent()
		}
		for _, m := range c.Managers {
			c.WaitServing(t, m)
		}
		eventually(t, serveTimeout, func() error { _, err := c.Leader(c.Managers...); return err })
		report(t, "all managers restarted: leader elected %.2fs after shoal agent", time.Since(started).Seconds())
		for node, want := range labels {
			for _, m := range c.Managers {
				eventually(t, 10*time.Second, func() error { return hasLabels(m, node, want) })
			}
		}
		eventually(t, 30*time.Second, func() error { return write(c.Managers[1], 5*time.Second, target, "restart=after") })
		record(target, "restart", "after")
		working(t)
	})

	t.Run("partitioned_manager", func(t *testing.T) {
		defer c.Net.Bind(t)()
		working(t)
		leader, err := c.Leader(c.Managers...)
		if err != nil {
			t.Fatal(err)
		}
		var cut *Host
		for _, m := range c.Managers {
			if m != leader {
				cut = m
				break
			}
		}
		rest := others(c.Managers, cut)
		target := c.IDs[c.Workers[0].Name]
		t.Logf("cutting off follower %s (leader is %s)", cut.Name, leader.Name)
		cut.LinkDown()
		defer cut.LinkUp()

		start := time.Now()
		err = write(cut, 30*time.Second, target, "partition=cut")
		took := time.Since(start)
		if err == nil {
			t.Errorf("write through cut-off %s: got success, want an error", cut.Name)
		} else {
			report(t, "write through cut-off manager failed after %.2fs: %v", took.Seconds(), err)
			if !regexp.MustCompile(`(?i)quorum|leader`).MatchString(err.Error()) {
				t.Errorf("write through cut-off %s: error does not mention quorum or leader: %v", cut.Name, err)
			}
			if took > 15*time.Second {
				t.Errorf("write through cut-off %s took %.2fs to fail, want about 10s at most", cut.Name, took.Seconds())
			}
		}
		for i, m := range rest {
			k := fmt.Sprintf("partition%d", i)
			eventually(t, 20*time.Second, func() error { return write(m, 5*time.Second, target, k+"=during") })
			record(target, k, "during")
		}
		cut.LinkUp()
		healed := time.Now()
		eventually(t, serveTimeout, func() error { return hasLabels(cut, target, labels[target]) })
		report(t, "cut-off manager caught up: %.2fs after link up", time.Since(healed).Seconds())
		eventually(t, 30*time.Second, func() error { return write(cut, 5*time.Second, target, "partition=healed") })
		settled(t)
	})
}

// TestBadTokens checks that joins with a garbage token, a token pinning
// another CA, and a rotated token fail with a message naming the problem
// and leave the cluster unchanged.
func TestBadTokens(t *testing.T) {
	requireEnv(t)
	c := NewCluster(t, 1, 0)
	m := c.Managers[0]
	x := c.Net.AddHost("x")

	old := c.Token(t, m, "worker")
	parts := strings.Split(old, "-")
	if len(parts) != 4 {
		t.Fatalf("worker token %q: got %d dash-separated fields, want 4 (SHOAL-1-<ca digest>-<secret>)", old, len(parts))
	}
	sum := sha256.Sum256([]byte("not the cluster's CA " + parts[2]))
	otherDigest := strings.ToLower(base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(sum[:]))
	if len(otherDigest) != len(parts[2]) {
		t.Fatalf("digest length: got %d, want %d", len(otherDigest), len(parts[2]))
	}
	wrongCA := strings.Join([]string{parts[0], parts[1], otherDigest, parts[3]}, "-")

	out, err := m.Shoal("join-token", "worker", "-q", "--rotate")
	if err != nil {
		t.Fatal(err)
	}
	current := c.Token(t, m, "worker")
	if current == old {
		t.Fatalf("join-token worker --rotate: token unchanged")
	}
	if got := strings.TrimSpace(out); got != "" && got != current {
		t.Errorf("join-token worker -q --rotate printed %q, want the new token %q", got, current)
	}

	count := func() int {
		nodes, err := m.Nodes()
		if err != nil {
			t.Fatal(err)
		}
		return len(nodes)
	}
	// A message names the problem if it matches every pattern.
	tokenProblem := []string{`(?i)token`, `(?i)invalid|refused|rotated|rejected|expired|unknown|not a|malformed|mismatch|not valid|never issued|unauthori[sz]ed`}
	tests := []struct {
		name  string
		token string
		want  []string
	}{
		{"garbage", "this-is-not-a-token", tokenProblem},
		{"wrong_ca_digest", wrongCA, []string{`(?i)\bCA\b|digest|fingerprint`, `(?i)mismatch|does not match|refus|not the cluster|differ`}},
		{"rotated_worker_token", old, tokenProblem},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			defer c.Net.Bind(t)()
			x.ResetDataDir()
			p := x.Join(tt.token, m.IP)
			exited, _ := p.Wait(60 * time.Second)
			if !exited {
				p.Kill()
				t.Fatalf("join with %s token still running after 60s:\n%s", tt.name, tail(p.Log(), 20))
			}
			msg := errorLines(p.Log())
			t.Logf("join exit %d: %s", p.ExitCode(), msg)
			if p.ExitCode() == 0 {
				t.Errorf("join with %s token: exit 0, want non-zero", tt.name)
			}
			for _, re := range tt.want {
				if !regexp.MustCompile(re).MatchString(msg) {
					t.Errorf("join with %s token: message %q does not match %s", tt.name, msg, re)
				}
			}
			if got, want := count(), 1; got != want {
				t.Errorf("node ls after a failed join: got %d nodes, want %d", got, want)
			}
		})
	}
	t.Run("current_token", func(t *testing.T) {
		defer c.Net.Bind(t)()
		x.ResetDataDir()
		x.Join(current, m.IP)
		c.WaitServing(t, x)
		eventually(t, serveTimeout, func() error {
			if got, want := count(), 2; got != want {
				return fmt.Errorf("node ls: got %d nodes, want %d", got, want)
			}
			return nil
		})
	})
}

// errorLines returns the "Error:" lines of a log, or its tail if it has none.
func errorLines(log string) string {
	var out []string
	for _, l := range strings.Split(log, "\n") {
		if strings.Contains(l, "Error:") {
			out = append(out, strings.TrimSpace(l))
		}
	}
	if len(out) == 0 {
		return tail(log, 5)
	}
	return strings.Join(out, " | ")
}

// TestWorkerDown checks that workers stopped with SIGTERM and SIGKILL show
// down within 5 s and that node rm then removes them.
func TestWorkerDown(t *testing.T) {
	requireEnv(t)
	c := NewCluster(t, 1, 2)
	m := c.Managers[0]
	for _, tt := range []struct {
		name string
		w    *Host
		stop func(p *Proc)
	}{
		{"sigterm", c.Workers[0], func(p *Proc) {
			if err := p.Stop(); err != nil {
				t.Errorf("SIGTERM: %v", err)
			}
		}},
		{"sigkill", c.Workers[1], func(p *Proc) { p.Kill() }},
	} {
		t.Run(tt.name, func(t *testing.T) {
			defer c.Net.Bind(t)()
			start := time.Now()
			tt.stop(tt.w.Daemon())
			d, _, err := waitDown([]*Host{m}, tt.w.Name, start, 30*time.Second)
			if err != nil {
				t.Fatalf("worker %s never showed down: %v", tt.w.Name, err)
			}
			report(t, "worker stopped with %s shown down: %.2fs", tt.name, d.Seconds())
			if d > downWithin {
				t.Errorf("worker %s took %.2fs to show down, want at most %s", tt.w.Name, d.Seconds(), downWithin)
			}
			if _, err := m.Shoal("node", "rm", c.IDs[tt.w.Name]); err != nil {
				t.Fatal(err)
			}
			out, err := m.Shoal("node", "ls", "-q")
			if err != nil {
				t.Fatal(err)
			}
			if strings.Contains(out, c.IDs[tt.w.Name]) {
				t.Errorf("node ls -q after node rm still lists %s: %q", c.IDs[tt.w.Name], out)
			}
		})
	}
	nodes, err := m.Nodes()
	if err != nil {
		t.Fatal(err)
	}
	if got, want := len(nodes), 1; got != want {
		t.Errorf("node ls after removing both workers: got %d nodes, want %d: %s", got, want, summary(nodes))
	}
}
