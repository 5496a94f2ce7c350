package e2e

import (
	"fmt"
	"net"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/shoal-dev/shoal/api"
	"github.com/shoal-dev/shoal/internal/testenv"
)

// lossWindow is how long a loss rate is held on the worker.
const lossWindow = 60 * time.Second

// setLoss drops pct % of the packets the host sends and of those it
// receives (lo excepted), with nftables' numgen in its namespace; 0 removes
// the rules.
func setLoss(t testing.TB, h *Host, pct int) {
	t.Helper()
	_, _ = h.Exec("nft", "delete", "table", "inet", "shoal_e2e_loss")
	if pct == 0 {
		return
	}
	rules := fmt.Sprintf(`add table inet shoal_e2e_loss
add chain inet shoal_e2e_loss in { type filter hook input priority -300; policy accept; }
add chain inet shoal_e2e_loss out { type filter hook output priority -300; policy accept; }
add rule inet shoal_e2e_loss in iifname != "lo" numgen random mod 100 < %d drop
add rule inet shoal_e2e_loss out oifname != "lo" numgen random mod 100 < %d drop
`, pct, pct)
	path := h.net.dir + "/" + h.Name + "-loss.nft"
	if err := os.WriteFile(path, []byte(rules), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := h.Exec("nft", "-f", path); err != nil {
		t.Fatalf("%s: nft -f: %v: %s", h.Name, err, out)
	}
}

// TestPacketLoss holds 30 % and then 10 % packet loss (each way) on one
// worker for a minute each: the worker must keep its tasks (none moved),
// and how often it left ready is reported. Then the worker is killed for
// real, and its tasks must run elsewhere within 3 s.
func TestPacketLoss(t *testing.T) {
	requireEngine(t)
	testenv.Command(t, "nft")
	shoalBin(t)
	c := NewEngineCluster(t, 1, 2)
	s := &services{c: c, m: c.Managers[0]}
	m, w1 := c.Managers[0], c.Workers[0]
	defer c.Net.Bind(t)()
	s.run(t, "service", "create", "--name", "pl", "--replicas", "6", "--detach", c.Image)
	tasks, _ := s.wait(t, "pl", func(tasks []*api.Task) error {
		if err := replicas(6)(tasks); err != nil {
			return err
		}
		if n := len(Live(s.onNode(tasks, w1))); n == 0 {
			return fmt.Errorf("no task on %s yet", w1.Name)
		}
		return nil
	})
	ids := func(ts []*api.Task) []string {
		var out []string
		for _, tk := range ts {
			out = append(out, tk.ID)
		}
		slices.Sort(out)
		return out
	}
	live := ids(Live(tasks))

	// Every call a node makes to a manager shares one connection.
	t.Run("connections", func(t *testing.T) {
		out, err := m.Exec("ss", "-Htn", "state", "established", "( sport = :2377 )")
		if err != nil {
			t.Fatalf("ss: %v: %s", err, out)
		}
		perPeer := map[string]int{}
		for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
			f := strings.Fields(line)
			if len(f) < 4 {
				continue
			}
			if host, _, err := net.SplitHostPort(f[len(f)-1]); err == nil {
				perPeer[host]++
			}
		}
		total, most := 0, 0
		for _, n := range perPeer {
			total, most = total+n, max(most, n)
		}
		report(t, "FIGURE established API connections on the leader: %d from %d nodes, at most %d per node", total, len(perPeer), most)
		for _, h := range c.Hosts() {
			if perPeer[h.IP] > 1 {
				t.Errorf("%s holds %d connections to the leader's API, want 1: %v", h.Name, perPeer[h.IP], perPeer)
			}
		}
	})
	onW1 := ids(Live(s.onNode(tasks, w1)))

	for _, pct := range []int{30, 10} {
		t.Run(fmt.Sprintf("loss_%d", pct), func(t *testing.T) {
			setLoss(t, w1, pct)
			flaps, states := 0, map[api.NodeState]int{}
			last := api.NodeStateReady
			end := time.Now().Add(lossWindow)
			for time.Now().Before(end) {
				nodes, err := m.Nodes()
				if err == nil {
					if n, ok := Node(nodes, w1.Name); ok {
						st := n.Status.State
						states[st]++
						if st != api.NodeStateReady && last == api.NodeStateReady {
							flaps++
							t.Logf("%s left ready: %s (%s)", w1.Name, st, n.Status.Message)
						}
						last = st
					}
				}
				time.Sleep(250 * time.Millisecond)
			}
			setLoss(t, w1, 0)
			now, err := Tasks(m, "pl")
			if err != nil {
				t.Fatal(err)
			}
			moved := 0
			for _, id := range ids(now) {
				if !slices.Contains(live, id) {
					moved++ // a task made to replace one
				}
			}
			report(t, "FIGURE packet loss %d%% each way on %s for %s: %d flaps (ready -> unknown/down), %d tasks moved; states seen %v",
				pct, w1.Name, lossWindow, flaps, moved, states)
			if moved != 0 {
				t.Errorf("%d tasks moved under %d%% loss, want 0: %s", moved, pct, c.TaskSummary(now))
			}
			if got := ids(Live(s.onNode(now, w1))); !slices.Equal(got, onW1) {
				t.Errorf("running on %s: got %v, want the same tasks %v", w1.Name, got, onW1)
			}
			eventually(t, 30*time.Second, func() error {
				nodes, err := m.Nodes()
				if err != nil {
					return err
				}
				if n, _ := Node(nodes, w1.Name); n.Status.State != api.NodeStateReady {
					return fmt.Errorf("%s is %s", w1.Name, n.Status.State)
				}
				return nil
			})
		})
	}

	t.Run("kill", func(t *testing.T) {
		killed := time.Now()
		w1.Daemon().Kill()
		c.Engines[w1.Name].Kill()
		_, err := poll(30*time.Second, func() error {
			now, err := Tasks(m, "pl")
			if err != nil {
				return err
			}
			if err := replicas(6)(now); err != nil {
				return err
			}
			if n := len(Live(s.onNode(now, w1))); n != 0 {
				return fmt.Errorf("%d tasks still on %s", n, w1.Name)
			}
			return nil
		})
		took := time.Since(killed)
		if err != nil {
			t.Fatalf("replacements after the kill of %s: %v", w1.Name, err)
		}
		report(t, "FIGURE worker %s killed (shoal and containerd, kill -9): its %d tasks running elsewhere after %.2fs",
			w1.Name, len(onW1), took.Seconds())
		if took > 3*time.Second {
			t.Errorf("replacements took %.2fs, want < 3s", took.Seconds())
		}
	})
}
