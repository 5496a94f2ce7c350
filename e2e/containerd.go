package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/containerd/containerd"
	"github.com/containerd/containerd/errdefs"
	"github.com/containerd/containerd/namespaces"

	"github.com/shoal-dev/shoal/api"
	"github.com/shoal-dev/shoal/internal/testenv"
	"github.com/shoal-dev/shoal/testimage"
)

// taskNamespace is the containerd namespace shoal runs task containers in.
const taskNamespace = "shoal"

// engineStartTimeout bounds how long a containerd may take to answer.
const engineStartTimeout = 20 * time.Second

// requireEngine stops the test unless containerd, runc, nsenter, busybox
// and docker-registry are installed (apt-get install -y containerd runc
// util-linux docker-registry busybox-static).
func requireEngine(t testing.TB) {
	t.Helper()
	requireEnv(t)
	for _, bin := range []string{"containerd", "containerd-shim-runc-v2", "runc", "nsenter", testimage.RegistryBinary} {
		testenv.Command(t, bin)
	}
	testenv.File(t, testimage.DefaultBusybox)
}

// Engine is a private containerd running in a host's network namespace,
// with its own root, state and socket. It runs in the test's mount
// namespace (entered with nsenter), because `ip netns exec` remounts /sys
// and so hides the cgroup hierarchies runc needs.
type Engine struct {
	Host *Host
	// Address is the gRPC socket, short enough for a unix socket path.
	Address string
	dir     string
	cfgPath string

	mu    sync.Mutex
	proc  *Proc
	procs []*Proc // every containerd process started
	// seen are containers met while the engine ran, kept so that cleanup
	// finds their processes and cgroups even if containerd is gone.
	seen map[string]string // container ID -> cgroups path
}

// StartEngine starts a containerd for h and registers, on the run's owning
// test, a cleanup that kills every container it ran, its shims and itself,
// and removes its cgroups, mounts and files, even after a failure.
func StartEngine(h *Host) *Engine {
	t := h.net.T()
	t.Helper()
	dir := filepath.Join(h.net.dir, h.Name+"-containerd")
	e := &Engine{
		Host:    h,
		Address: filepath.Join(stateDir, h.net.ID+"-"+h.Name+".sock"),
		dir:     dir,
		cfgPath: filepath.Join(dir, "config.toml"),
		seen:    map[string]string{},
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatalf("%s: containerd dir: %v", h.Name, err)
	}
	cfg := fmt.Sprintf(`version = 2
root = %q
state = %q
disabled_plugins = ["io.containerd.grpc.v1.cri"]

[grpc]
  address = %q

[ttrpc]
  address = %q

[plugins."io.containerd.internal.v1.opt"]
  path = %q
`, filepath.Join(dir, "root"), filepath.Join(dir, "state"), e.Address, e.Address+".ttrpc", filepath.Join(dir, "opt"))
	if err := os.WriteFile(e.cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatalf("%s: containerd config: %v", h.Name, err)
	}
	if err := os.WriteFile(e.recordPath(), []byte(dir+"\n"+e.Address+"\n"), 0o600); err != nil {
		t.Fatalf("%s: record containerd: %v", h.Name, err)
	}
	h.net.owner.Cleanup(e.cleanup)
	e.Start()
	return e
}

// Start runs containerd (again) and waits until it answers.
func (e *Engine) Start() {
	t := e.Host.net.T()
	t.Helper()
	ctd, err := exec.LookPath("containerd")
	if err != nil {
		t.Fatal(err)
	}
	// ip netns exec gave the process a mount namespace of its own; go back
	// to the test's (or the host's own, MountNS), keeping the network
	// namespace.
	mnt := fmt.Sprintf("/proc/%d/ns/mnt", os.Getpid())
	if e.Host.MountNS != "" {
		mnt = e.Host.MountNS
	}
	p := e.Host.StartProgram("nsenter", "--mount="+mnt, "--", ctd, "--config", e.cfgPath, "--log-level", "warn")
	e.mu.Lock()
	e.proc = p
	e.procs = append(e.procs, p)
	e.mu.Unlock()
	eventually(t, engineStartTimeout, func() error {
		if p.Exited() {
			t.Fatalf("%s: containerd exited (%s):\n%s", e.Host.Name, p.state(), tail(p.Log(), 30))
		}
		return e.with(time.Second, func(ctx context.Context, c *containerd.Client) error {
			_, err := c.Version(ctx)
			return err
		})
	})
}

// Proc is the running (or last) containerd process.
func (e *Engine) Proc() *Proc {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.proc
}

// Kill kills containerd with SIGKILL; its shims and containers keep running.
func (e *Engine) Kill() { e.Proc().Kill() }

// with calls f with a client of the engine, in the shoal namespace.
func (e *Engine) with(timeout time.Duration, f func(ctx context.Context, c *containerd.Client) error) error {
	if _, err := os.Stat(e.Address); err != nil {
		return fmt.Errorf("%s: containerd socket: %w", e.Host.Name, err)
	}
	c, err := containerd.New(e.Address, containerd.WithTimeout(timeout), containerd.WithDefaultNamespace(taskNamespace))
	if err != nil {
		return fmt.Errorf("%s: containerd: %w", e.Host.Name, err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(namespaces.WithNamespace(context.Background(), taskNamespace), timeout)
	defer cancel()
	return f(ctx, c)
}

// Container is a container of the engine's shoal namespace.
type Container struct {
	// ID is the container's ID, the shoal task ID.
	ID string
	// Status is its task's status ("" when it has no task).
	Status containerd.ProcessStatus
	// Pid is its task's process, 0 unless running.
	Pid uint32
	// CgroupsPath is the spec's cgroups path, like /shoal/ID.
	CgroupsPath string
}

// Containers lists the shoal namespace's containers, by ID.
func (e *Engine) Containers() ([]Container, error) {
	var out []Container
	err := e.with(10*time.Second, func(ctx context.Context, c *containerd.Client) error {
		cs, err := c.Containers(ctx)
		if err != nil {
			return err
		}
		for _, ctr := range cs {
			x := Container{ID: ctr.ID()}
			spec, err := ctr.Spec(ctx)
			if errdefs.IsNotFound(err) {
				continue
			}
			if err != nil {
				return fmt.Errorf("container %s: %w", ctr.ID(), err)
			}
			if spec.Linux != nil {
				x.CgroupsPath = spec.Linux.CgroupsPath
			}
			e.remember(x.ID, x.CgroupsPath)
			task, err := ctr.Task(ctx, nil)
			switch {
			case errdefs.IsNotFound(err):
			case err != nil:
				return fmt.Errorf("container %s: %w", ctr.ID(), err)
			default:
				st, err := task.Status(ctx)
				if err != nil && !errdefs.IsNotFound(err) {
					return fmt.Errorf("container %s: %w", ctr.ID(), err)
				}
				x.Status = st.Status
				if st.Status == containerd.Running {
					x.Pid = task.Pid()
				}
			}
			out = append(out, x)
		}
		return nil
	})
	slices.SortFunc(out, func(a, b Container) int { return strings.Compare(a.ID, b.ID) })
	return out, err
}

// Running lists the IDs of the containers whose task runs.
func (e *Engine) Running() ([]string, error) {
	cs, err := e.Containers()
	if err != nil {
		return nil, err
	}
	var ids []string
	for _, c := range cs {
		if c.Status == containerd.Running {
			ids = append(ids, c.ID)
		}
	}
	return ids, nil
}

// Container finds one container by ID.
func (e *Engine) Container(id string) (Container, error) {
	cs, err := e.Containers()
	if err != nil {
		return Container{}, err
	}
	for _, c := range cs {
		if c.ID == id {
			return c, nil
		}
	}
	return Container{}, fmt.Errorf("%s: no container %s in containerd", e.Host.Name, id)
}

func (e *Engine) remember(id, cgroupsPath string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if cgroupsPath != "" || e.seen[id] == "" {
		e.seen[id] = cgroupsPath
	}
}

// cleanup leaves nothing of the engine behind: it stops the host's shoal
// processes (so no new container starts), deletes tasks and containers
// through containerd, stops it, kills its shims and whatever still runs in
// its containers' cgroups, removes those cgroups and runc's state, unmounts
// what is mounted under its directory and removes it.
func (e *Engine) cleanup() {
	logf := e.Host.net.owner.Logf
	for _, p := range e.Host.Procs() {
		if !e.owns(p) {
			p.Kill()
		}
	}
	if p := e.Proc(); p != nil && !p.Exited() {
		if _, err := e.Containers(); err != nil { // records cgroups
			logf("cleanup %s: list containers: %v", e.Host.Name, err)
		}
		err := e.with(30*time.Second, func(ctx context.Context, c *containerd.Client) error {
			cs, err := c.Containers(ctx)
			if err != nil {
				return err
			}
			for _, ctr := range cs {
				if task, err := ctr.Task(ctx, nil); err == nil {
					if _, err := task.Delete(ctx, containerd.WithProcessKill); err != nil && !errdefs.IsNotFound(err) {
						logf("cleanup %s: delete task %s: %v", e.Host.Name, ctr.ID(), err)
					}
				}
				if err := ctr.Delete(ctx, containerd.WithSnapshotCleanup); err != nil && !errdefs.IsNotFound(err) {
					logf("cleanup %s: delete container %s: %v", e.Host.Name, ctr.ID(), err)
				}
			}
			return nil
		})
		if err != nil {
			logf("cleanup %s: containerd: %v", e.Host.Name, err)
		}
		p.cmd.Process.Signal(syscall.SIGTERM)
		if ok, _ := p.Wait(10 * time.Second); !ok {
			p.Kill()
		}
	}
	e.mu.Lock()
	seen := maps.Clone(e.seen)
	e.mu.Unlock()
	purgeEngine(e.dir, e.Address, seen, func(format string, args ...any) {
		logf("cleanup %s: "+format, append([]any{e.Host.Name}, args...)...)
	})
	os.Remove(e.recordPath())
}

// purgeEngine removes what the containerd with directory dir and socket
// address left behind once it is stopped: its shims, the processes of its
// containers (seen, container ID -> cgroups path, and those whose bundle
// is still in its state directory), their cgroups and runc state, the
// mounts under dir, dir itself and the sockets.
func purgeEngine(dir, address string, seen map[string]string, logf func(format string, args ...any)) {
	for _, pid := range shimsOf(address) {
		logf("killing leftover shim %d", pid)
		syscall.Kill(pid, syscall.SIGKILL)
	}
	all := maps.Clone(seen)
	if all == nil {
		all = map[string]string{}
	}
	for id, cg := range bundles(dir) {
		if all[id] == "" {
			all[id] = cg
		}
	}
	for id, cg := range all {
		if cg == "" {
			cg = "/" + taskNamespace + "/" + id
		}
		if n := killCgroup(cg); n > 0 {
			logf("killed %d leftover processes of container %s", n, id)
		}
		// runc keeps its state under containerd's default runc root,
		// shared by every containerd on the machine.
		os.RemoveAll(filepath.Join("/run/containerd/runc", taskNamespace, id))
	}
	mounts := mountsUnder(dir)
	for i := len(mounts) - 1; i >= 0; i-- {
		if err := syscall.Unmount(mounts[i], syscall.MNT_DETACH); err != nil {
			logf("unmount %s: %v", mounts[i], err)
		}
	}
	if err := os.RemoveAll(dir); err != nil {
		logf("%v", err)
	}
	os.Remove(address)
	os.Remove(address + ".ttrpc")
}

// recordPath is the file naming the engine's directory and socket, so a
// later run can purge what this one left if it dies before its cleanup.
func (e *Engine) recordPath() string {
	return filepath.Join(stateDir, e.Host.net.ID+"-"+e.Host.Name+".engine")
}

var engineSweepOnce sync.Once

// sweepEngines purges the engines of earlier runs whose test process is
// gone (see sweepLeftovers, which already killed the processes in their
// namespaces; the containers have namespaces of their own).
func sweepEngines(t testing.TB) {
	records, _ := filepath.Glob(filepath.Join(stateDir, runPrefix+"*.engine"))
	for _, rec := range records {
		id, _, _ := strings.Cut(filepath.Base(rec), "-")
		if !isRunID(id) || ownerAlive(runFile(id)) {
			continue
		}
		b, err := os.ReadFile(rec)
		if f := strings.Fields(string(b)); err == nil && len(f) == 2 {
			t.Logf("sweep: purging the containerd of an earlier run in %s", f[0])
			purgeEngine(f[0], f[1], nil, func(format string, args ...any) { t.Logf("sweep: "+format, args...) })
		}
		os.Remove(rec)
	}
}

// owns says whether p is one of the engine's containerd processes.
func (e *Engine) owns(p *Proc) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return slices.Contains(e.procs, p)
}

// bundles reads the containers whose runtime bundle is still in the state
// directory of the containerd in dir, container ID -> cgroups path, and
// kills their init processes.
func bundles(dir string) map[string]string {
	out := map[string]string{}
	cfgs, _ := filepath.Glob(filepath.Join(dir, "state", "io.containerd.runtime.v2.task", "*", "*", "config.json"))
	for _, path := range cfgs {
		id := filepath.Base(filepath.Dir(path))
		var spec struct {
			Linux struct {
				CgroupsPath string `json:"cgroupsPath"`
			} `json:"linux"`
		}
		if b, err := os.ReadFile(path); err == nil && json.Unmarshal(b, &spec) == nil {
			out[id] = spec.Linux.CgroupsPath
		} else {
			out[id] = ""
		}
		if b, err := os.ReadFile(filepath.Join(filepath.Dir(path), "init.pid")); err == nil {
			if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && pid > 1 {
				syscall.Kill(pid, syscall.SIGKILL)
			}
		}
	}
	return out
}

// cgroupRoot is where the cgroup v1 hierarchies are mounted.
const cgroupRoot = "/sys/fs/cgroup"

// killCgroup kills every process in cgroup path (in every hierarchy),
// waits a little for them to go, and removes the cgroup. It returns how
// many processes it signalled.
func killCgroup(path string) int {
	dirs, _ := filepath.Glob(filepath.Join(cgroupRoot, "*", path))
	killed := map[int]bool{}
	deadline := time.Now().Add(5 * time.Second)
	for {
		alive := false
		for _, d := range dirs {
			b, err := os.ReadFile(filepath.Join(d, "cgroup.procs"))
			if err != nil {
				continue
			}
			for _, f := range strings.Fields(string(b)) {
				if pid, err := strconv.Atoi(f); err == nil && pid > 1 {
					syscall.Kill(pid, syscall.SIGKILL)
					killed[pid] = true
					alive = true
				}
			}
		}
		if !alive || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond) // waiting for killed processes to be reaped
	}
	for _, d := range dirs {
		os.Remove(d)
	}
	return len(killed)
}

// shimsOf lists the pids of shims serving the containerd at address.
func shimsOf(address string) []int {
	entries, _ := os.ReadDir("/proc")
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil {
			continue
		}
		args := strings.Split(string(b), "\x00")
		if len(args) > 0 && strings.Contains(args[0], "containerd-shim") && slices.Contains(args, address) {
			pids = append(pids, pid)
		}
	}
	return pids
}

// mountsUnder lists mount points at or below dir, in mount order.
func mountsUnder(dir string) []string {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) > 4 && (fields[4] == dir || strings.HasPrefix(fields[4], dir+"/")) {
			out = append(out, fields[4])
		}
	}
	return out
}

// HTTPClient is an HTTP client whose connections start from the host.
func (h *Host) HTTPClient(timeout time.Duration) *http.Client {
	return &http.Client{
		Timeout: timeout,
		Transport: &http.Transport{
			DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
				d := 5 * time.Second
				if dl, ok := ctx.Deadline(); ok {
					d = time.Until(dl)
				}
				return h.Dial(addr, d)
			},
			DisableKeepAlives: true,
		},
	}
}

// RegistryPort is the port the test registry listens on.
const RegistryPort = 5000

// StartRegistry runs Debian's docker-registry on h's address, as
// testimage.StartRegistry configures it, and pushes the test busybox image
// to it. It returns the image's reference, REG_IP:5000/busybox:latest.
//
// testimage.StartRegistry itself cannot be used here: it checks readiness
// from the test's own network namespace, which cannot reach the hosts.
func StartRegistry(h *Host) (addr, ref string) {
	t := h.net.T()
	t.Helper()
	dir := filepath.Join(h.net.dir, h.Name+"-registry")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	addr = net.JoinHostPort(h.IP, strconv.Itoa(RegistryPort))
	cfg := fmt.Sprintf("version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: %s\nhttp:\n  addr: %s\n",
		filepath.Join(dir, "data"), addr)
	cfgPath := filepath.Join(dir, "config.yml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	bin, err := exec.LookPath(testimage.RegistryBinary)
	if err != nil {
		t.Fatal(err)
	}
	p := h.StartProgram(bin, "serve", cfgPath)
	client := h.HTTPClient(10 * time.Second)
	eventually(t, engineStartTimeout, func() error {
		if p.Exited() {
			t.Fatalf("%s: docker-registry exited (%s):\n%s", h.Name, p.state(), tail(p.Log(), 30))
		}
		resp, err := client.Get("http://" + addr + "/v2/")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("GET /v2/: %s", resp.Status)
		}
		return nil
	})
	im, err := testimage.Build("")
	if err != nil {
		t.Fatal(err)
	}
	ref = addr + "/busybox:latest"
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := im.Push(ctx, client, ref); err != nil {
		t.Fatalf("push %s: %v", ref, err)
	}
	return addr, ref
}

// EngineCluster is a Cluster whose hosts run containerd, pulling the test
// image from a registry on a host of its own.
type EngineCluster struct {
	*Cluster
	// Engines maps host name to its containerd.
	Engines map[string]*Engine
	// Registry is the host running the registry; RegistryAddr its
	// HOST:PORT and Image the test image's reference there.
	Registry     *Host
	RegistryAddr string
	Image        string
	// extraFlags, if set, adds flags to every daemon started on a host.
	extraFlags func(h *Host) []string
	// hostSetup, if set, runs on each host before its containerd starts.
	hostSetup func(h *Host)
}

// EngineOption changes how NewEngineCluster starts its daemons.
type EngineOption func(*EngineCluster)

// WithDaemonFlags adds flags(h) to every shoal daemon the cluster starts on
// h: init, joins, AddWorker and Agent restarts.
func WithDaemonFlags(flags func(h *Host) []string) EngineOption {
	return func(c *EngineCluster) { c.extraFlags = flags }
}

// WithHostSetup runs setup(h) on each host before its containerd starts.
func WithHostSetup(setup func(h *Host)) EngineOption {
	return func(c *EngineCluster) { c.hostSetup = setup }
}

// NewEngineCluster starts, like NewCluster, managers and workers hosts
// m1.., w1.., each with its own containerd, plus a host "reg" serving the
// test image, and waits until every node is ready with its engine available.
func NewEngineCluster(t testing.TB, managers, workers int, opts ...EngineOption) *EngineCluster {
	t.Helper()
	requireEngine(t)
	n := NewNet(t)
	engineSweepOnce.Do(func() { sweepEngines(t) })
	c := &EngineCluster{Cluster: &Cluster{Net: n, IDs: map[string]string{}}, Engines: map[string]*Engine{}}
	for _, o := range opts {
		o(c)
	}
	for i := 1; i <= managers; i++ {
		c.Managers = append(c.Managers, n.AddHost(fmt.Sprintf("m%d", i)))
	}
	for i := 1; i <= workers; i++ {
		c.Workers = append(c.Workers, n.AddHost(fmt.Sprintf("w%d", i)))
	}
	c.Registry = n.AddHost("reg")
	c.RegistryAddr, c.Image = StartRegistry(c.Registry)
	for _, h := range c.Hosts() {
		if c.hostSetup != nil {
			c.hostSetup(h)
		}
		c.Engines[h.Name] = StartEngine(h)
	}

	m1 := c.Managers[0]
	m1.Init(c.daemonFlags(m1)...)
	c.WaitServing(t, m1)
	mtok, wtok := c.Token(t, m1, "manager"), c.Token(t, m1, "worker")
	for _, m := range c.Managers[1:] {
		m.Join(mtok, m1.IP, c.daemonFlags(m)...)
		c.WaitServing(t, m)
	}
	for _, w := range c.Workers {
		w.Join(wtok, m1.IP, c.daemonFlags(w)...)
	}
	for _, w := range c.Workers {
		c.WaitServing(t, w)
	}
	c.WaitSettled(t, m1)
	eventually(t, serveTimeout, func() error { return c.EnginesAvailable(m1) })
	return c
}

// daemonFlags point h's shoal at its containerd and the registry; they come
// after the harness's own --containerd-address, so they win.
func (c *EngineCluster) daemonFlags(h *Host) []string {
	flags := []string{"--containerd-address", c.Engines[h.Name].Address, "--insecure-registry", c.RegistryAddr}
	if c.extraFlags != nil {
		flags = append(flags, c.extraFlags(h)...)
	}
	return flags
}

// AddWorker adds host name with its containerd and joins it as a worker.
func (c *EngineCluster) AddWorker(t testing.TB, name string) *Host {
	t.Helper()
	h := c.Net.AddHost(name)
	if c.hostSetup != nil {
		c.hostSetup(h)
	}
	c.Engines[name] = StartEngine(h)
	m1 := c.Managers[0]
	h.Join(c.Token(t, m1, "worker"), m1.IP, c.daemonFlags(h)...)
	c.Workers = append(c.Workers, h)
	c.WaitServing(t, h)
	return h
}

// Agent starts `shoal agent` on h again, with its containerd.
func (c *EngineCluster) Agent(h *Host) *Proc {
	c.Net.T().Helper()
	return h.startDaemon(append([]string{"agent", "--data-dir", h.DataDir}, c.daemonFlags(h)...)...)
}

// EnginesAvailable checks through h that every node reports its engine.
func (c *EngineCluster) EnginesAvailable(h *Host) error {
	nodes, err := h.Nodes()
	if err != nil {
		return err
	}
	var errs []error
	for _, n := range nodes {
		if !n.Description.Engine.Available {
			errs = append(errs, fmt.Errorf("node %s: engine not available: %q", n.Description.Hostname, n.Description.Engine.Error))
		}
	}
	return errors.Join(errs...)
}

// Tasks is `service ps SERVICE --format json` through h.
func Tasks(h *Host, service string) ([]*api.Task, error) {
	out, err := h.Shoal("service", "ps", service, "--format", "json")
	if err != nil {
		return nil, err
	}
	var tasks []*api.Task
	if err := json.Unmarshal([]byte(out), &tasks); err != nil {
		return nil, fmt.Errorf("%s: service ps %s: %w: %q", h.Name, service, err, out)
	}
	return tasks, nil
}

// NodeTasks is `node ps NODE --format json` through h.
func NodeTasks(h *Host, node string) ([]*api.Task, error) {
	out, err := h.Shoal("node", "ps", node, "--format", "json")
	if err != nil {
		return nil, err
	}
	var tasks []*api.Task
	if err := json.Unmarshal([]byte(out), &tasks); err != nil {
		return nil, fmt.Errorf("%s: node ps %s: %w: %q", h.Name, node, err, out)
	}
	return tasks, nil
}

// Live are the tasks that run and are meant to.
func Live(tasks []*api.Task) []*api.Task {
	var out []*api.Task
	for _, t := range tasks {
		if t.Status.State == api.TaskRunning && t.DesiredState == api.TaskRunning {
			out = append(out, t)
		}
	}
	return out
}

// TaskSummary is a one-line view of tasks for error messages:
// slot/node/state/desired/short ID.
func (c *Cluster) TaskSummary(tasks []*api.Task) string {
	var parts []string
	for _, t := range tasks {
		node := t.NodeID
		if h := c.HostByID(t.NodeID); h != nil {
			node = h.Name
		} else if len(node) > 6 {
			node = node[:6]
		}
		id := t.ID
		if len(id) > 6 {
			id = id[:6]
		}
		s := fmt.Sprintf("%d/%s/%s/%s/%s", t.Slot, node, t.Status.State, t.DesiredState, id)
		if t.Status.Err != "" {
			s += "(" + t.Status.Err + ")"
		}
		parts = append(parts, s)
	}
	return "[" + strings.Join(parts, " ") + "]"
}
