package e2e

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/shoal-dev/shoal/api"
)

// roleWithin bounds how long a promotion or demotion may take to show.
const roleWithin = 30 * time.Second

// hasRole checks that h's own info reports role.
func hasRole(h *Host, role api.NodeRole) error {
	info, err := h.Info()
	if err != nil {
		return err
	}
	if info.Role != role {
		return fmt.Errorf("%s: info role: got %q, want %q", h.Name, info.Role, role)
	}
	return nil
}

// managerStatus checks through via that hostname has role and manager
// status status ("" for a worker).
func managerStatus(via *Host, hostname string, role api.NodeRole, status string) error {
	nodes, err := via.Nodes()
	if err != nil {
		return err
	}
	n, ok := Node(nodes, hostname)
	if !ok {
		return fmt.Errorf("via %s: node ls has no %s: %s", via.Name, hostname, summary(nodes))
	}
	if n.Spec.Role != role || n.ManagerStatus != status {
		return fmt.Errorf("via %s: %s is %s/%q, want %s/%q: %s", via.Name, hostname, n.Spec.Role, n.ManagerStatus, role, status, summary(nodes))
	}
	return nil
}

// TestNodeRoles promotes and demotes workers of a 1-manager, 2-worker
// cluster, fails over among promoted managers, and makes nodes leave.
func TestNodeRoles(t *testing.T) {
	requireEnv(t)
	shoalBin(t)
	start := time.Now()
	c := NewCluster(t, 1, 2)
	m1, w1, w2 := c.Managers[0], c.Workers[0], c.Workers[1]
	report(t, "cluster of 1 manager and 2 workers ready: %.2fs", time.Since(start).Seconds())

	// promote runs `node promote` for each host through via and waits until
	// each says it is a manager, via lists it Reachable, and node ls works
	// on its own socket.
	promote := func(t *testing.T, via *Host, hs ...*Host) {
		t.Helper()
		for _, h := range hs {
			start := time.Now()
			if _, err := via.Shoal("node", "promote", h.Name); err != nil {
				t.Fatal(err)
			}
			d := eventually(t, roleWithin, func() error {
				if err := hasRole(h, api.RoleManager); err != nil {
					return err
				}
				if err := managerStatus(via, h.Name, api.RoleManager, api.ManagerReachable); err != nil {
					return err
				}
				_, err := h.Nodes()
				return err
			})
			report(t, "promote %s: manager and Reachable after %.2fs (%.2fs polling)", h.Name, time.Since(start).Seconds(), d.Seconds())
		}
	}

	t.Run("promote", func(t *testing.T) {
		defer c.Net.Bind(t)()
		promote(t, m1, w1)
		nodes, err := w1.Nodes()
		if err != nil {
			t.Fatal(err)
		}
		if n, _ := Node(nodes, m1.Name); n.ManagerStatus != api.ManagerLeader {
			t.Errorf("via %s: %s manager_status: got %q, want Leader: %s", w1.Name, m1.Name, n.ManagerStatus, summary(nodes))
		}
	})

	t.Run("demote", func(t *testing.T) {
		defer c.Net.Bind(t)()
		start := time.Now()
		if _, err := m1.Shoal("node", "demote", w1.Name); err != nil {
			t.Fatal(err)
		}
		eventually(t, roleWithin, func() error {
			if err := hasRole(w1, api.RoleWorker); err != nil {
				return err
			}
			return managerStatus(m1, w1.Name, api.RoleWorker, "")
		})
		report(t, "demote %s: worker after %.2fs", w1.Name, time.Since(start).Seconds())
		eventually(t, roleWithin, func() error {
			_, err := w1.Nodes()
			if err == nil {
				return fmt.Errorf("%s: node ls on a demoted node: got success, want the worker error", w1.Name)
			}
			if !strings.Contains(err.Error(), "worker") {
				return fmt.Errorf("%s: node ls error does not say worker: %w", w1.Name, err)
			}
			return nil
		})
		if err := managerStatus(m1, m1.Name, api.RoleManager, api.ManagerLeader); err != nil {
			t.Error(err)
		}
		info, err := m1.Info()
		if err != nil {
			t.Fatal(err)
		}
		if !info.IsLeader {
			t.Errorf("%s: info is_leader: got false, want true", m1.Name)
		}
	})

	t.Run("failover_among_promoted", func(t *testing.T) {
		defer c.Net.Bind(t)()
		promote(t, m1, w1, w2)
		managers := []*Host{m1, w1, w2}
		leader, err := c.Leader(managers...)
		if err != nil {
			t.Fatal(err)
		}
		survivors := others(managers, leader)
		oldID := c.IDs[leader.Name]
		target := c.IDs[survivors[0].Name]
		t.Logf("killing leader %s (%s)", leader.Name, oldID)
		killed := time.Now()
		leader.Daemon().Kill()

		var elected time.Duration
		var newLeader *Host
		var writer *Host
		_, err = poll(60*time.Second, func() error {
			var errs []string
			for _, m := range survivors {
				if newLeader == nil {
					if info, err := m.Info(); err == nil && info.LeaderID != "" && info.LeaderID != oldID {
						elected, newLeader = time.Since(killed), c.HostByID(info.LeaderID)
					}
				}
				if err := write(m, 5*time.Second, target, "roles=failover"); err != nil {
					errs = append(errs, err.Error())
					continue
				}
				writer = m
				return nil
			}
			return errors.New(strings.Join(errs, "; "))
		})
		if err != nil {
			t.Fatalf("no successful write within 60s of killing the leader: %v", err)
		}
		failover := time.Since(killed)
		report(t, "failover among promoted managers: %.2fs (kill to first write through %s)", failover.Seconds(), writer.Name)
		if newLeader == nil {
			// The write went through before a poll of info saw the new leader.
			elected = failover
		}
		eventually(t, 30*time.Second, func() error {
			l, err := c.Leader(survivors...)
			if err != nil {
				return err
			}
			if l == leader {
				return fmt.Errorf("survivors still name the killed %s leader", leader.Name)
			}
			newLeader = l
			return nil
		})
		report(t, "new leader %s, reported by a survivor within %.2fs of the kill", newLeader.Name, elected.Seconds())

		restarted := time.Now()
		leader.Agent()
		c.WaitServing(t, leader)
		eventually(t, serveTimeout, func() error {
			for _, m := range survivors {
				if err := managerStatus(m, leader.Name, api.RoleManager, api.ManagerReachable); err != nil {
					return err
				}
			}
			return hasRole(leader, api.RoleManager)
		})
		report(t, "killed leader %s Reachable again: %.2fs after shoal agent", leader.Name, time.Since(restarted).Seconds())
		eventually(t, 10*time.Second, func() error { return hasLabels(leader, target, map[string]string{"roles": "failover"}) })
	})

	t.Run("leave_worker", func(t *testing.T) {
		defer c.Net.Bind(t)()
		managers := []*Host{m1, w1, w2}
		leader, err := func() (*Host, error) {
			var l *Host
			_, err := poll(serveTimeout, func() error {
				var err error
				l, err = c.Leader(managers...)
				return err
			})
			return l, err
		}()
		if err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		if _, err := leader.Shoal("node", "demote", w2.Name); err != nil {
			t.Fatal(err)
		}
		// Ask a manager that stays one: w2 may have been the leader.
		asked := leader
		if asked == w2 {
			asked = w1
		}
		eventually(t, roleWithin, func() error {
			if err := hasRole(w2, api.RoleWorker); err != nil {
				return err
			}
			return managerStatus(asked, w2.Name, api.RoleWorker, "")
		})
		report(t, "demote %s (leader %s): worker after %.2fs", w2.Name, leader.Name, time.Since(start).Seconds())

		daemon := w2.Daemon()
		start = time.Now()
		if out, err := w2.Shoal("leave"); err != nil {
			t.Fatal(err)
		} else {
			t.Logf("leave on %s: %s", w2.Name, strings.TrimSpace(out))
		}
		exited, err := daemon.Wait(30 * time.Second)
		if !exited {
			t.Fatalf("%s: daemon still running 30s after leave:\n%s", w2.Name, tail(daemon.Log(), 20))
		}
		if err != nil {
			t.Errorf("%s: daemon after leave: %v, want exit 0:\n%s", w2.Name, err, tail(daemon.Log(), 20))
		}
		report(t, "leave %s: daemon exited %.2fs after leave", w2.Name, time.Since(start).Seconds())
		eventually(t, 10*time.Second, func() error {
			for _, m := range []*Host{m1, w1} {
				nodes, err := m.Nodes()
				if err != nil {
					return err
				}
				if _, ok := Node(nodes, w2.Name); ok {
					return fmt.Errorf("via %s: node ls still lists %s: %s", m.Name, w2.Name, summary(nodes))
				}
				if got, want := len(nodes), 2; got != want {
					return fmt.Errorf("via %s: got %d nodes, want %d: %s", m.Name, got, want, summary(nodes))
				}
			}
			return nil
		})
		if _, err := os.Stat(filepath.Join(w2.DataDir, "node.json")); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s: node.json after leave: got %v, want it gone", w2.Name, err)
		}
	})

	t.Run("leave_manager_refused", func(t *testing.T) {
		defer c.Net.Bind(t)()
		before, err := m1.Nodes()
		if err != nil {
			t.Fatal(err)
		}
		_, err = w1.Shoal("leave")
		if err == nil {
			t.Fatalf("%s: leave on a manager without --force: got success, want refusal", w1.Name)
		}
		t.Logf("leave on manager %s refused: %v", w1.Name, err)
		for _, re := range []string{`(?i)demote`, `--force`} {
			if !regexp.MustCompile(re).MatchString(err.Error()) {
				t.Errorf("leave refusal %q does not match %s", err, re)
			}
		}
		if p := w1.Daemon(); p.Exited() {
			t.Fatalf("%s: daemon exited after a refused leave (%s):\n%s", w1.Name, p.state(), tail(p.Log(), 20))
		}
		if err := hasRole(w1, api.RoleManager); err != nil {
			t.Error(err)
		}
		if _, err := os.Stat(filepath.Join(w1.DataDir, "node.json")); err != nil {
			t.Errorf("%s: node.json after a refused leave: %v", w1.Name, err)
		}
		after, err := m1.Nodes()
		if err != nil {
			t.Fatal(err)
		}
		if len(after) != len(before) {
			t.Errorf("node ls after a refused leave: got %s, want %s", summary(after), summary(before))
		}
		if err := managerStatus(m1, w1.Name, api.RoleManager, api.ManagerReachable); err != nil {
			if err2 := managerStatus(m1, w1.Name, api.RoleManager, api.ManagerLeader); err2 != nil {
				t.Error(err)
			}
		}
	})
}
