package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/shoal-dev/shoal/api"
)

var (
	initHelpOnce sync.Once
	initHelp     string
)

// hasInitFlag says whether `shoal init` takes flag.
func hasInitFlag(t testing.TB, flag string) bool {
	t.Helper()
	initHelpOnce.Do(func() {
		out, _ := exec.Command(shoalBin(t), "init", "--help").CombinedOutput()
		initHelp = string(out)
	})
	return strings.Contains(initHelp, flag)
}

// scaleManagerFlags are daemon flags that let hundreds of hollow nodes join
// at once from one address: no join rate limit.
func scaleManagerFlags(t testing.TB) []string {
	t.Helper()
	if hasInitFlag(t, "--join-rate") {
		return []string{"--join-rate", "0"}
	}
	return nil
}

// hollowDownGrace is the --node-down-grace scale runs init with when
// SHOAL_BENCH_DOWN_GRACE sets one; by default none (15 s). Hollow nodes are
// not gossip members, so the leader finds a killed or paused one by its
// session ending (its long poll goes with its agent), down 2 periods later,
// as a real dead node is once gossip confirms its death.
func hollowDownGrace(t testing.TB) []string {
	t.Helper()
	g := os.Getenv("SHOAL_BENCH_DOWN_GRACE")
	if g == "" || !hasInitFlag(t, "--node-down-grace") {
		return nil
	}
	return []string{"--node-down-grace", g}
}

// newManagers starts a cluster of managers only (m1 ran init, with
// initExtra too) with extra daemon flags, and waits until it settles.
func newManagers(t testing.TB, n *Net, managers int, extra, initExtra []string) *Cluster {
	t.Helper()
	c := &Cluster{Net: n, IDs: map[string]string{}}
	for i := 1; i <= managers; i++ {
		c.Managers = append(c.Managers, n.AddHost(fmt.Sprintf("m%d", i)))
	}
	m1 := c.Managers[0]
	m1.Init(append(append([]string(nil), extra...), initExtra...)...)
	c.WaitServing(t, m1)
	mtok := c.Token(t, m1, "manager")
	for _, m := range c.Managers[1:] {
		m.Join(mtok, m1.IP, extra...)
		c.WaitServing(t, m)
	}
	c.WaitSettled(t, m1)
	return c
}

// waitNodesReady waits until h lists managers+hollow nodes, all ready,
// the hollow ones with their engine (the scheduler skips a node whose
// engine is not reported yet), and returns how long that took.
func waitNodesReady(t testing.TB, h *Host, managers, hollow int, timeout time.Duration) time.Duration {
	t.Helper()
	c := h.APIClient()
	defer c.Close()
	return eventually(t, timeout, func() error {
		ctx, cancel := apiCtx()
		defer cancel()
		nodes, err := c.Nodes(ctx)
		if err != nil {
			return err
		}
		ready, engines := 0, 0
		for _, n := range nodes {
			if n.Status.State == api.NodeStateReady {
				ready++
				if n.Description.Engine.Available {
					engines++
				}
			}
		}
		if want := managers + hollow; len(nodes) != want || ready != want || engines < hollow {
			return fmt.Errorf("%d nodes, %d ready, %d with an engine; want %d ready, %d with an engine", len(nodes), ready, engines, want, hollow)
		}
		return nil
	})
}

// createService creates a replicated service of hollow tasks through h.
func createService(t testing.TB, h *Host, name string, replicas int) {
	t.Helper()
	c := h.APIClient()
	defer c.Close()
	ctx, cancel := apiCtx()
	defer cancel()
	_, err := c.CreateService(ctx, api.ServiceSpec{Name: name, Mode: api.ModeReplicated, Replicas: uint64(replicas),
		Task: api.TaskSpec{Image: "hollow/none:1"}})
	if err != nil {
		t.Fatalf("create service %s: %v", name, err)
	}
}

// TestScaleSmoke is the hollow-node simulator at a size `make test` can
// afford: 3 managers and 50 hollow workers in one shoal-sim process, 500
// replicas all running, then 5 nodes lost and their tasks running elsewhere.
func TestScaleSmoke(t *testing.T) {
	const nodes, replicas, lost = 50, 500, 5
	n := NewNet(t)
	c := newManagers(t, n, 3, scaleManagerFlags(t), hollowDownGrace(t))
	m1 := c.Managers[0]
	sim := n.AddHost("sim").StartSim(c.Token(t, m1, "worker"), m1.IP, nodes)
	took := waitNodesReady(t, m1, 3, nodes, 2*time.Minute)
	t.Logf("%d hollow nodes ready in %s", nodes, took.Round(time.Millisecond))

	start := time.Now()
	createService(t, m1, "web", replicas)
	took, err := waitRunning([]*Host{m1}, "web", replicas, nil, start, pollInterval, 2*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d replicas running in %s", replicas, took.Round(time.Millisecond))
	st, err := sim.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if st.Tasks != replicas {
		t.Errorf("simulator runs %d tasks, want %d", st.Tasks, replicas)
	}
	t.Logf("simulator: RSS %.1f MB, %.2f MB per node, %d goroutines", float64(st.RSSBytes)/1e6, float64(st.RSSPerNode)/1e6, st.Goroutines)

	// Spread evenly, so every node lost takes tasks with it.
	simNodes, err := sim.Nodes()
	if err != nil {
		t.Fatal(err)
	}
	for _, sn := range simNodes {
		if sn.Running != replicas/nodes {
			t.Fatalf("hollow node %s runs %d tasks, want %d; placement: %s", sn.Hostname, sn.Running, replicas/nodes, placement(m1, "web"))
		}
	}
	killed, err := sim.Do("kill", lost)
	if err != nil {
		t.Fatal(err)
	}
	gone := map[string]bool{}
	for _, k := range killed {
		gone[k.ID] = true
	}
	start = time.Now()
	took, err = waitRunning([]*Host{m1}, "web", replicas, gone, start, pollInterval, 2*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d nodes killed: their tasks running elsewhere after %s", lost, took.Round(time.Millisecond))
	eventually(t, time.Minute, func() error {
		nodes, err := m1.Nodes()
		if err != nil {
			return err
		}
		for _, n := range nodes {
			if gone[n.ID] && n.Status.State != api.NodeStateDown {
				return fmt.Errorf("killed node %s: state %s, want down", n.Description.Hostname, n.Status.State)
			}
		}
		return nil
	})
}

// TestSimPauseResume: a paused hollow node goes down and its tasks move; on
// resume it is ready again and keeps only what the cluster still assigns
// it, as a real agent cut off for a while does.
func TestSimPauseResume(t *testing.T) {
	const replicas = 6
	n := NewNet(t)
	c := newManagers(t, n, 1, scaleManagerFlags(t), hollowDownGrace(t))
	m1 := c.Managers[0]
	sim := n.AddHost("sim").StartSim(c.Token(t, m1, "worker"), m1.IP, 3)
	waitNodesReady(t, m1, 1, 3, time.Minute)
	createService(t, m1, "web", replicas)
	if _, err := waitRunning([]*Host{m1}, "web", replicas, nil, time.Now(), pollInterval, time.Minute); err != nil {
		t.Fatal(err)
	}

	paused, err := sim.DoNodes("pause", "sim-0001")
	if err != nil {
		t.Fatal(err)
	}
	id := paused[0].ID
	if _, err := waitRunning([]*Host{m1}, "web", replicas, map[string]bool{id: true}, time.Now(), pollInterval, time.Minute); err != nil {
		t.Fatal(err)
	}
	if v, err := m1.Inspect(id); err != nil || v.Status.State != api.NodeStateDown {
		t.Fatalf("paused node %s: state %q (%v), want down; tasks: %s", id, v.Status.State, err, placement(m1, "web"))
	}
	if _, err := sim.DoNodes("pause", "sim-0001"); err == nil {
		t.Errorf("pause of a paused node: got success, want an error")
	}

	if _, err := sim.DoNodes("resume", id); err != nil {
		t.Fatal(err)
	}
	eventually(t, time.Minute, func() error {
		v, err := m1.Inspect(id)
		if err != nil {
			return err
		}
		if v.Status.State != api.NodeStateReady {
			return fmt.Errorf("resumed node: state %s, want ready", v.Status.State)
		}
		// The node runs exactly the tasks the cluster wants running on it.
		cl := m1.APIClient()
		defer cl.Close()
		ctx, cancel := apiCtx()
		defer cancel()
		tasks, err := cl.Tasks(ctx, api.TaskFilter{Node: id})
		if err != nil {
			return err
		}
		_, want := runningCount(tasks, map[string]bool{id: true})
		nodes, err := sim.Nodes()
		if err != nil {
			return err
		}
		for _, sn := range nodes {
			if sn.ID == id && sn.Running != want {
				return fmt.Errorf("resumed node runs %d tasks, the cluster wants %d", sn.Running, want)
			}
		}
		return nil
	})
	if _, err := waitRunning([]*Host{m1}, "web", replicas, nil, time.Now(), pollInterval, time.Minute); err != nil {
		t.Fatal(err)
	}
}
