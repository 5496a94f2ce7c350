package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/shoal-dev/shoal/api"
	"github.com/shoal-dev/shoal/internal/testenv"
)

// benchScale is what TestBenchScale measures; the JSON of it is the
// BENCH_SCALE line scripts/bench-scale.sh prints.
type benchScale struct {
	Nodes        int     `json:"nodes"`
	Managers     int     `json:"managers"`
	Replicas     int     `json:"replicas"`
	LoadAvg      string  `json:"load_start"`
	JoinS        float64 `json:"join_s"`
	SimRSSMB     float64 `json:"sim_rss_mb,omitempty"`
	SimMBPerNode float64 `json:"sim_rss_mb_per_node,omitempty"`

	// a. service create -> all running.
	CreateCallS   float64 `json:"create_call_s"`
	CreateRunS    float64 `json:"create_running_s"`
	CreateTasksPS float64 `json:"create_tasks_per_s"`
	CreateLoad    string  `json:"create_load"`
	// b. nodes killed -> their tasks running elsewhere.
	Killed   int       `json:"killed_per_round"`
	KillS    []float64 `json:"kill_replaced_s"`
	KillP50S float64   `json:"kill_replaced_p50_s"`
	KillLoad string    `json:"kill_load"`
	// c. idle.
	IdleS          float64 `json:"idle_s"`
	LeaderCPUPct   float64 `json:"leader_cpu_pct"`
	LeaderRSSMB    float64 `json:"leader_rss_mb"`
	FollowerCPUPct float64 `json:"follower_cpu_pct"`
	FollowerRSSMB  float64 `json:"follower_rss_mb"`
	SimCPUPct      float64 `json:"sim_cpu_pct"`
	IdleLoad       string  `json:"idle_load"`
	// d. raft log (new raft-wal segments during the create, 1 MiB steps).
	RaftBytesPerTask float64 `json:"raft_log_bytes_per_task"`
	Cycles           int     `json:"cycles"`
	RaftLogMB        float64 `json:"raft_log_mb_after_cycles"`
	RaftSnapshotMB   float64 `json:"raft_snapshot_mb_after_cycles"`
	CyclesLoad       string  `json:"cycles_load"`
	// e. connections.
	LeaderConns    int `json:"leader_established"`
	LeaderAPIConns int `json:"leader_established_api"`
	// f. leader kill -> first accepted write.
	LeaderKillWriteS float64 `json:"leader_kill_first_write_s"`
	LeaderKillLoad   string  `json:"leader_kill_load"`

	// DownGrace holds the flags the managers ran with (see hollowDownGrace
	// and SHOAL_BENCH_MANAGER_FLAGS).
	DownGrace string `json:"manager_flags,omitempty"`
	// LeaderChanges are leader changes seen between phases, other than the
	// one the bench causes.
	LeaderChanges []string `json:"leader_changes,omitempty"`
	Failed        string   `json:"failed,omitempty"`
}

// envInt reads a SHOAL_BENCH_ knob.
func envInt(t testing.TB, name string, def int) int {
	t.Helper()
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 {
		t.Fatalf("%s=%q: want a number >= 0", name, v)
	}
	return n
}

// loadAvg is the machine's 1, 5 and 15 minute load.
func loadAvg() string {
	b, _ := os.ReadFile("/proc/loadavg")
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

// procCPU is the user+system CPU time of pid in seconds.
func procCPU(pid int) float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	if len(f) < 13 {
		return 0
	}
	u, _ := strconv.ParseFloat(f[11], 64)
	st, _ := strconv.ParseFloat(f[12], 64)
	return (u + st) / 100 // USER_HZ
}

// procRSS is VmRSS of pid in MB.
func procRSS(pid int) float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) == 3 && f[0] == "VmRSS:" {
			kb, _ := strconv.ParseFloat(f[1], 64)
			return kb / 1024
		}
	}
	return 0
}

// establishedConns counts established TCP connections in pid's network
// namespace, and those whose local port is port.
func establishedConns(pid, port int) (all, onPort int) {
	for _, file := range []string{"tcp", "tcp6"} {
		f, err := os.Open(fmt.Sprintf("/proc/%d/net/%s", pid, file))
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			fl := strings.Fields(sc.Text())
			if len(fl) < 4 || fl[3] != "01" {
				continue
			}
			all++
			if i := strings.LastIndexByte(fl[1], ':'); i >= 0 {
				if p, err := strconv.ParseInt(fl[1][i+1:], 16, 32); err == nil && int(p) == port {
					onPort++
				}
			}
		}
		f.Close()
	}
	return all, onPort
}

// raftSizes is the log store (everything under DIR/raft but snapshots) and
// the newest snapshot, in bytes.
func raftSizes(dataDir string) (logBytes, snapBytes int64) {
	root := filepath.Join(dataDir, "raft")
	var newest time.Time
	filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return nil
		}
		if strings.Contains(path, string(filepath.Separator)+"snapshots"+string(filepath.Separator)) {
			if d.Name() == "state.bin" && info.ModTime().After(newest) {
				newest, snapBytes = info.ModTime(), info.Size()
			}
			return nil
		}
		logBytes += info.Size()
		return nil
	})
	return logBytes, snapBytes
}

// watchSegments notes, every 100 ms until the returned function is called,
// the raft-wal segment files (*.wal, preallocated to a fixed size) that
// appear under dir, and then returns the bytes of the new ones: what the
// log grew by, to one segment, even if a snapshot deleted some meanwhile.
func watchSegments(dir string) (stop func() int64) {
	seen := map[string]int64{}
	scan := func() map[string]int64 {
		now := map[string]int64{}
		filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
			if err == nil && !d.IsDir() && strings.HasSuffix(path, ".wal") {
				if info, err := d.Info(); err == nil {
					now[path] = info.Size()
				}
			}
			return nil
		})
		return now
	}
	before := scan()
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		for {
			for path, size := range scan() {
				if _, old := before[path]; !old {
					seen[path] = size
				}
			}
			select {
			case <-done:
				return
			case <-time.After(100 * time.Millisecond):
			}
		}
	}()
	return func() int64 {
		close(done)
		<-finished
		var total int64
		for _, size := range seen {
			total += size
		}
		return total
	}
}

// waitGone waits until service has no tasks left.
func waitGone(h *Host, service string, timeout time.Duration) error {
	c := h.APIClient()
	defer c.Close()
	_, err := poll(timeout, func() error {
		ctx, cancel := apiCtx()
		defer cancel()
		tasks, err := c.Tasks(ctx, api.TaskFilter{Service: service})
		if err != nil {
			if api.IsStatus(err, 404) {
				return nil
			}
			return err
		}
		if len(tasks) > 0 {
			return fmt.Errorf("service %s: %d tasks left", service, len(tasks))
		}
		return nil
	})
	return err
}

// lagging summarises the tasks of service that should run but do not, and
// the running ones still on lost nodes, by state and message.
func lagging(h *Host, service string, lost map[string]bool) string {
	c, err := api.NewClient("unix://"+h.Socket(), nil)
	if err != nil {
		return err.Error()
	}
	defer c.Close()
	ctx, cancel := apiCtx()
	defer cancel()
	tasks, err := c.Tasks(ctx, api.TaskFilter{Service: service})
	if err != nil {
		return err.Error()
	}
	nodes, err := c.Nodes(ctx)
	if err != nil {
		return err.Error()
	}
	nodeState := map[string]api.NodeState{}
	for _, n := range nodes {
		nodeState[n.ID] = n.Status.State
	}
	count := map[string]int{}
	for _, t := range tasks {
		if t.DesiredState != api.TaskRunning || (t.Status.State == api.TaskRunning && !lost[t.NodeID]) {
			continue
		}
		count[fmt.Sprintf("%s %q on %s node (lost %v)", t.Status.State, t.Status.Message+t.Status.Err, nodeState[t.NodeID], lost[t.NodeID])]++
	}
	return fmt.Sprint(count)
}

func secs(d time.Duration) float64 { return float64(d.Round(time.Millisecond)) / 1e9 }

// TestBenchScale is `make bench-scale`: 3 real managers and hollow nodes
// (1,000 by default) in one shoal-sim process. It prints a table and a
// BENCH_SCALE line of JSON. Knobs: SHOAL_BENCH_NODES, _REPLICAS, _KILL,
// _KILL_ROUNDS, _IDLE (seconds), _CYCLES, _PHASE_TIMEOUT (seconds, 600); SHOAL_BENCH_MANAGER_FLAGS adds
// daemon flags to the managers (unset: raft timeouts of 2 s).
func TestBenchScale(t *testing.T) {
	testenv.OptIn(t, "SHOAL_BENCH_SCALE", "measures the control plane with hollow nodes")
	r := &benchScale{
		Managers: 3,
		Nodes:    envInt(t, "SHOAL_BENCH_NODES", 1000),
		Replicas: envInt(t, "SHOAL_BENCH_REPLICAS", 10000),
		Killed:   envInt(t, "SHOAL_BENCH_KILL", 100),
		Cycles:   envInt(t, "SHOAL_BENCH_CYCLES", 3),
		IdleS:    float64(envInt(t, "SHOAL_BENCH_IDLE", 60)),
		LoadAvg:  loadAvg(),
	}
	rounds := envInt(t, "SHOAL_BENCH_KILL_ROUNDS", 3)
	phase := time.Duration(envInt(t, "SHOAL_BENCH_PHASE_TIMEOUT", 600)) * time.Second
	interval := 250 * time.Millisecond // a read of 10k tasks costs the manager; do not hammer it
	defer func() {
		if t.Failed() && r.Failed == "" {
			r.Failed = "see the test log"
		}
		printBenchScale(r)
	}()
	fail := func(what string, err error) {
		t.Helper()
		r.Failed = what + ": " + err.Error()
		t.Fatalf("%s: %v", what, err)
	}

	n := NewNet(t)
	extra, set := os.LookupEnv("SHOAL_BENCH_MANAGER_FLAGS")
	if !set && hasInitFlag(t, "--raft-election-timeout") {
		// raft's 500 ms defaults churn leaders on a loaded 2-core machine.
		extra = "--raft-heartbeat-timeout 2s --raft-election-timeout 2s"
	}
	flags := append(scaleManagerFlags(t), strings.Fields(extra)...)
	c := newManagers(t, n, r.Managers, flags, hollowDownGrace(t))
	r.DownGrace = strings.Join(append(append([]string(nil), flags...), hollowDownGrace(t)...), " ")
	// roles finds the leader among the live managers now; a change since
	// the last look is reported, since it costs the figures around it.
	alive := append([]*Host(nil), c.Managers...)
	var leader, follower *Host
	var followers []*Host
	roles := func(phase string) {
		t.Helper()
		l, err := c.Leader(alive...)
		if err != nil {
			fail("leader", err)
		}
		if leader != nil && l != leader {
			r.LeaderChanges = append(r.LeaderChanges, fmt.Sprintf("%s: %s -> %s", phase, leader.Name, l.Name))
			fmt.Printf("progress: leader changed before %s: %s -> %s\n", phase, leader.Name, l.Name)
		}
		leader, followers = l, nil
		for _, m := range alive {
			if m != l {
				followers = append(followers, m)
			}
		}
		follower = followers[0]
	}
	roles("join")
	sim := n.AddHost("sim").StartSim(c.Token(t, leader, "worker"), leader.IP, r.Nodes, "--join-parallel", "16")
	r.JoinS = secs(waitNodesReady(t, follower, r.Managers, r.Nodes, phase))
	fmt.Printf("progress: %d hollow nodes ready in %.1f s (load %s)\n", r.Nodes, r.JoinS, loadAvg())

	// a. create -> all running; the raft log grows by what the tasks cost.
	segs := watchSegments(filepath.Join(leader.DataDir, "raft"))
	cl := leader.APIClient()
	start := time.Now()
	ctx, cancel := apiCtx()
	_, err := cl.CreateService(ctx, api.ServiceSpec{Name: "bench", Mode: api.ModeReplicated, Replicas: uint64(r.Replicas),
		Task: api.TaskSpec{Image: "hollow/none:1"}})
	cancel()
	cl.Close()
	if err != nil {
		fail("create", err)
	}
	returned := time.Now()
	r.CreateCallS = secs(returned.Sub(start))
	took, err := waitRunning(append(followers, leader), "bench", r.Replicas, nil, returned, interval, phase)
	if err != nil {
		fail("create -> running", err)
	}
	r.CreateRunS = secs(took)
	r.CreateTasksPS = float64(r.Replicas) / (r.CreateCallS + r.CreateRunS)
	r.CreateLoad = loadAvg()
	r.RaftBytesPerTask = float64(segs()) / float64(r.Replicas)
	fmt.Printf("progress: a. %d replicas running %.2f s after create returned (%.0f tasks/s, load %s)\n",
		r.Replicas, r.CreateRunS, r.CreateTasksPS, r.CreateLoad)

	// c, e. idle with every node and task.
	roles("idle")
	lp, fp, sp := leader.Daemon().Pid(), follower.Daemon().Pid(), sim.Proc.Pid()
	l0, f0, s0 := procCPU(lp), procCPU(fp), procCPU(sp)
	idleStart := time.Now()
	time.Sleep(time.Duration(r.IdleS) * time.Second) // measuring an idle period, not waiting for state
	el := time.Since(idleStart).Seconds()
	r.LeaderCPUPct = 100 * (procCPU(lp) - l0) / el
	r.FollowerCPUPct = 100 * (procCPU(fp) - f0) / el
	r.SimCPUPct = 100 * (procCPU(sp) - s0) / el
	r.LeaderRSSMB, r.FollowerRSSMB = procRSS(lp), procRSS(fp)
	r.IdleLoad = loadAvg()
	r.LeaderConns, r.LeaderAPIConns = establishedConns(lp, 2377)
	if st, err := sim.Stats(); err == nil {
		r.SimRSSMB, r.SimMBPerNode = float64(st.RSSBytes)/1e6, float64(st.RSSPerNode)/1e6
	}
	fmt.Printf("progress: c. idle %.0f s: leader %.1f%% CPU %.0f MB, follower %.1f%% CPU %.0f MB (load %s)\n",
		el, r.LeaderCPUPct, r.LeaderRSSMB, r.FollowerCPUPct, r.FollowerRSSMB, r.IdleLoad)

	// b. kill rounds.
	roles("kill rounds")
	lost := map[string]bool{}
	for i := range rounds {
		killed, err := sim.Do("kill", r.Killed)
		if err != nil {
			fail("kill", err)
		}
		start := time.Now()
		for _, k := range killed {
			lost[k.ID] = true
		}
		// A round still going after 8 s says what its tasks wait for.
		slow := time.AfterFunc(8*time.Second, func() {
			fmt.Printf("progress: b. round %d still waiting after 8 s: %s\n", i+1, lagging(follower, "bench", lost))
		})
		took, err := waitRunning(append(followers, leader), "bench", r.Replicas, lost, start, interval, phase)
		slow.Stop()
		if err != nil {
			fail(fmt.Sprintf("kill round %d", i+1), err)
		}
		r.KillS = append(r.KillS, secs(took))
		fmt.Printf("progress: b. round %d/%d: %d nodes killed, their tasks running elsewhere after %.2f s\n", i+1, rounds, r.Killed, secs(took))
	}
	r.KillP50S = median(r.KillS)
	r.KillLoad = loadAvg()

	// f. leader kill -> first accepted write, through the other managers.
	roles("leader kill")
	leader.Daemon().Kill()
	alive = followers
	start = time.Now()
	for i := 0; ; i++ {
		var werr error
		for _, m := range followers {
			mc := m.APIClient()
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			_, werr = mc.CreateService(ctx, api.ServiceSpec{Name: fmt.Sprintf("probe%d", i), Mode: api.ModeReplicated,
				Task: api.TaskSpec{Image: "hollow/none:1"}})
			cancel()
			mc.Close()
			if werr == nil {
				break
			}
		}
		if werr == nil {
			break
		}
		if time.Since(start) > phase {
			fail("leader kill -> write", werr)
		}
		time.Sleep(50 * time.Millisecond)
	}
	r.LeaderKillWriteS = secs(time.Since(start))
	r.LeaderKillLoad = loadAvg()
	fmt.Printf("progress: f. leader killed: first write accepted after %.2f s\n", r.LeaderKillWriteS)

	// d. create/remove cycles, on the new leader.
	leader = nil
	roles("cycles")
	nl := leader
	remove := func(h *Host, name string) {
		hc := h.APIClient()
		defer hc.Close()
		ctx, cancel := apiCtx()
		defer cancel()
		if err := hc.RemoveService(ctx, name); err != nil {
			fail("remove "+name, err)
		}
		if err := waitGone(h, name, phase); err != nil {
			fail("remove "+name, err)
		}
	}
	remove(nl, "bench")
	for i := range r.Cycles {
		name := fmt.Sprintf("cycle%d", i+1)
		createService(t, nl, name, r.Replicas)
		if _, err := waitRunning(alive, name, r.Replicas, lost, time.Now(), interval, phase); err != nil {
			fail(name, err)
		}
		remove(nl, name)
		fmt.Printf("progress: d. cycle %d/%d: %d tasks created, running, removed\n", i+1, r.Cycles, r.Replicas)
	}
	logB, snapB := raftSizes(nl.DataDir)
	r.RaftLogMB, r.RaftSnapshotMB = float64(logB)/1e6, float64(snapB)/1e6
	r.CyclesLoad = loadAvg()
}

func printBenchScale(r *benchScale) {
	w := os.Stdout
	fmt.Fprintf(w, "\nbench-scale: %d hollow nodes, %d managers (%s), %d replicas; load at start %s\n", r.Nodes, r.Managers, r.DownGrace, r.Replicas, r.LoadAvg)
	row := func(k, v, load string) { fmt.Fprintf(w, "  %-46s %-44s %s\n", k, v, load) }
	row("", "", "load (1 5 15 min)")
	row("join: all nodes ready", fmt.Sprintf("%.1f s; simulator %.0f MB, %.2f MB/node", r.JoinS, r.SimRSSMB, r.SimMBPerNode), "")
	row("a. create -> all running", fmt.Sprintf("%.2f s after create (call %.2f s), %.0f tasks/s", r.CreateRunS, r.CreateCallS, r.CreateTasksPS), r.CreateLoad)
	row(fmt.Sprintf("b. %d nodes killed -> tasks running elsewhere", r.Killed), fmt.Sprintf("p50 %.2f s %v", r.KillP50S, r.KillS), r.KillLoad)
	row(fmt.Sprintf("c. idle %.0f s: leader", r.IdleS), fmt.Sprintf("%.1f%% of a core, RSS %.0f MB", r.LeaderCPUPct, r.LeaderRSSMB), r.IdleLoad)
	row("   follower", fmt.Sprintf("%.1f%% of a core, RSS %.0f MB", r.FollowerCPUPct, r.FollowerRSSMB), "")
	row("   simulator", fmt.Sprintf("%.1f%% of a core", r.SimCPUPct), "")
	row("d. raft log bytes per task created", fmt.Sprintf("%.0f B", r.RaftBytesPerTask), "")
	row(fmt.Sprintf("   after %d create/remove cycles", r.Cycles), fmt.Sprintf("log %.1f MB, snapshot %.1f MB", r.RaftLogMB, r.RaftSnapshotMB), r.CyclesLoad)
	row("e. established connections on the leader", fmt.Sprintf("%d (%d on :2377)", r.LeaderConns, r.LeaderAPIConns), "")
	row("f. leader kill -> first accepted write", fmt.Sprintf("%.2f s", r.LeaderKillWriteS), r.LeaderKillLoad)
	if len(r.LeaderChanges) > 0 {
		fmt.Fprintf(w, "  leader changes the bench did not cause: %s\n", strings.Join(r.LeaderChanges, "; "))
	}
	if r.Failed != "" {
		fmt.Fprintf(w, "  FAILED: %s\n", r.Failed)
	}
	b, _ := json.Marshal(r)
	fmt.Fprintf(w, "BENCH_SCALE %s\n", b)
}
