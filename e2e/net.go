package e2e

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/shoal-dev/shoal/internal/testenv"
)

// stateDir records, per run, the pid of the test process that owns the run's
// namespaces, so a later run can remove what a killed run left behind.
const stateDir = "/run/shoal-e2e"

// runPrefix starts every run id; a run id is runPrefix and 6 hex digits.
const runPrefix = "se"

// Net is one run's network: a switch namespace holding a bridge, and hosts
// (one namespace each) plugged into it with a veth pair.
type Net struct {
	// owner is the test that created the net and tears it down; t is the
	// test currently using it (see Bind).
	owner testing.TB
	t     testing.TB
	ID    string
	// Switch is the name of the switch namespace.
	Switch string
	// subnet is X in 10.123.X.0/24.
	subnet int
	dir    string

	mu    sync.Mutex
	hosts []*Host
}

// requireEnv stops the test unless it can create namespaces: root (run
// `make e2e` as root) and the `ip` command from iproute2.
func requireEnv(t testing.TB) {
	t.Helper()
	testenv.Root(t)
	testenv.Command(t, "ip")
}

// NewNet creates a run's switch namespace and registers the teardown of
// everything the run creates.
func NewNet(t testing.TB) *Net {
	t.Helper()
	requireEnv(t)
	sweepOnce.Do(func() { sweepLeftovers(t) })

	var b [3]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatalf("run id: %v", err)
	}
	n := &Net{
		owner:  t,
		t:      t,
		ID:     runPrefix + hex.EncodeToString(b[:]),
		subnet: 1 + int(b[0])%250,
		dir:    t.TempDir(),
	}
	n.Switch = n.ID + "-sw"
	if err := writeRunFile(n.ID); err != nil {
		t.Fatalf("record run: %v", err)
	}
	t.Cleanup(n.destroy)
	t.Logf("e2e run %s: switch namespace %s, subnet 10.123.%d.0/24, logs in %s", n.ID, n.Switch, n.subnet, n.dir)

	n.must("netns", "add", n.Switch)
	n.must("-n", n.Switch, "link", "set", "lo", "up")
	n.must("-n", n.Switch, "link", "add", "br0", "type", "bridge")
	n.must("-n", n.Switch, "link", "set", "br0", "up")
	return n
}

// Bind makes subtest t the one that helpers fail when something goes
// wrong, until the returned function is called: `defer c.Net.Bind(t)()`.
// Subtests using a shared net must run one at a time.
func (n *Net) Bind(t testing.TB) (restore func()) {
	n.mu.Lock()
	prev := n.t
	n.t = t
	n.mu.Unlock()
	return func() {
		n.mu.Lock()
		n.t = prev
		n.mu.Unlock()
	}
}

// AddHost creates host name (at most 5 characters, e.g. "m1"): a namespace
// with eth0 at 10.123.X.N/24 plugged into the switch, loopback up, and an
// empty data dir.
func (n *Net) AddHost(name string) *Host {
	n.T().Helper()
	if len(name) > 5 {
		n.T().Fatalf("host name %q: want at most 5 characters", name)
	}
	n.mu.Lock()
	num := len(n.hosts) + 1
	h := &Host{
		net:     n,
		Name:    name,
		NS:      n.ID + "-" + name,
		IP:      fmt.Sprintf("10.123.%d.%d", n.subnet, num),
		link:    n.ID + name,
		DataDir: filepath.Join(n.dir, name),
	}
	n.hosts = append(n.hosts, h)
	n.mu.Unlock()

	if err := os.MkdirAll(h.DataDir, 0o700); err != nil {
		n.T().Fatalf("data dir: %v", err)
	}
	n.must("netns", "add", h.NS)
	n.must("-n", h.NS, "link", "set", "lo", "up")
	n.must("-n", n.Switch, "link", "add", h.link, "type", "veth", "peer", "name", "eth0", "netns", h.NS)
	n.must("-n", n.Switch, "link", "set", h.link, "master", "br0")
	n.must("-n", n.Switch, "link", "set", h.link, "up")
	n.must("-n", h.NS, "addr", "add", h.IP+"/24", "dev", "eth0")
	n.must("-n", h.NS, "link", "set", "eth0", "up")
	return h
}

// Hosts returns the hosts in the order they were added.
func (n *Net) Hosts() []*Host {
	n.mu.Lock()
	defer n.mu.Unlock()
	return append([]*Host(nil), n.hosts...)
}

func (n *Net) must(args ...string) {
	n.T().Helper()
	if out, err := ipCmd(args...); err != nil {
		n.T().Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
	}
}

func ipCmd(args ...string) (string, error) {
	out, err := exec.Command("ip", args...).CombinedOutput()
	return strings.TrimSpace(string(out)), err
}

// destroy kills every process of the run and deletes its namespaces. It
// runs from t.Cleanup, so also after a failure or a panic.
func (n *Net) destroy() {
	hosts := n.Hosts()
	for _, h := range hosts {
		for _, p := range h.Procs() {
			p.Kill()
		}
	}
	if n.owner.Failed() {
		keep := filepath.Join(os.TempDir(), "shoal-e2e-logs", n.ID)
		if err := copyLogs(hosts, keep); err != nil {
			n.owner.Logf("teardown: keep logs: %v", err)
		} else {
			n.owner.Logf("full logs of the failed run kept in %s", keep)
		}
		for _, h := range hosts {
			for _, p := range h.Procs() {
				n.owner.Logf("--- %s: %s (%s) last lines of %s:\n%s", h.Name, strings.Join(p.Args, " "), p.state(), p.LogPath, tail(p.Log(), 30))
			}
		}
	}
	for _, h := range hosts {
		killNetnsPids(h.NS)
		if out, err := ipCmd("netns", "del", h.NS); err != nil {
			n.owner.Logf("teardown: ip netns del %s: %v: %s", h.NS, err, out)
		}
	}
	if out, err := ipCmd("netns", "del", n.Switch); err != nil {
		n.owner.Logf("teardown: ip netns del %s: %v: %s", n.Switch, err, out)
	}
	os.Remove(runFile(n.ID))
}

// copyLogs copies every process log of hosts into dir.
func copyLogs(hosts []*Host, dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	for _, h := range hosts {
		for _, p := range h.Procs() {
			b, err := os.ReadFile(p.LogPath)
			if err != nil {
				return err
			}
			if err := os.WriteFile(filepath.Join(dir, filepath.Base(p.LogPath)), b, 0o600); err != nil {
				return err
			}
		}
	}
	return nil
}

func tail(s string, lines int) string {
	ls := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(ls) > lines {
		ls = ls[len(ls)-lines:]
	}
	return strings.Join(ls, "\n")
}

// killNetnsPids kills whatever still runs inside a namespace of ours.
func killNetnsPids(ns string) {
	out, err := exec.Command("ip", "netns", "pids", ns).Output()
	if err != nil {
		return
	}
	for _, f := range strings.Fields(string(out)) {
		if pid, err := strconv.Atoi(f); err == nil && pid > 1 && pid != os.Getpid() {
			syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}

var sweepOnce sync.Once

func runFile(id string) string { return filepath.Join(stateDir, id+".pid") }

// writeRunFile records this process as the owner of run id.
func writeRunFile(id string) error {
	if err := os.MkdirAll(stateDir, 0o700); err != nil {
		return err
	}
	return writeOwner(runFile(id))
}

// writeOwner writes "pid starttime" of this process to path.
func writeOwner(path string) error {
	pid := os.Getpid()
	st, err := procStartTime(pid)
	if err != nil {
		return err
	}
	return os.WriteFile(path, []byte(fmt.Sprintf("%d %s\n", pid, st)), 0o600)
}

// procStartTime is field 22 of /proc/PID/stat, which tells a live process
// from a later one that reused its pid.
func procStartTime(pid int) (string, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return "", err
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return "", errors.New("malformed /proc stat")
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 20 {
		return "", errors.New("short /proc stat")
	}
	return f[19], nil
}

// ownerAlive says whether the test process recorded in a run file still runs.
func ownerAlive(path string) bool {
	b, err := os.ReadFile(path)
	if err != nil {
		return false
	}
	f := strings.Fields(string(b))
	if len(f) != 2 {
		return false
	}
	pid, err := strconv.Atoi(f[0])
	if err != nil {
		return false
	}
	st, err := procStartTime(pid)
	return err == nil && st == f[1]
}

// isRunID says whether s looks like a run id: "se" and 6 hex digits.
func isRunID(s string) bool {
	if len(s) != len(runPrefix)+6 || !strings.HasPrefix(s, runPrefix) {
		return false
	}
	_, err := hex.DecodeString(s[len(runPrefix):])
	return err == nil
}

// sweepLeftovers removes the namespaces (and the processes in them) of
// earlier runs whose test process is gone. Only runs with a run file are
// touched, so nothing the harness did not create is.
func sweepLeftovers(t testing.TB) {
	entries, err := os.ReadDir(stateDir)
	if err != nil {
		return
	}
	var dead []string
	for _, e := range entries {
		if e.IsDir() && strings.HasPrefix(e.Name(), "bin-") {
			dir := filepath.Join(stateDir, e.Name())
			if !ownerAlive(filepath.Join(dir, "owner")) {
				os.RemoveAll(dir)
			}
			continue
		}
		id, ok := strings.CutSuffix(e.Name(), ".pid")
		if !ok || !isRunID(id) || ownerAlive(filepath.Join(stateDir, e.Name())) {
			continue
		}
		dead = append(dead, id)
	}
	if len(dead) == 0 {
		return
	}
	out, _ := exec.Command("ip", "netns", "list").Output()
	for _, id := range dead {
		for _, line := range strings.Split(string(out), "\n") {
			f := strings.Fields(line)
			if len(f) == 0 || !strings.HasPrefix(f[0], id+"-") {
				continue
			}
			killNetnsPids(f[0])
			if o, err := ipCmd("netns", "del", f[0]); err != nil {
				t.Logf("sweep: ip netns del %s: %v: %s", f[0], err, o)
			} else {
				t.Logf("sweep: removed namespace %s left by an earlier run", f[0])
			}
		}
		os.Remove(runFile(id))
	}
}

// T is the test currently using the net.
func (n *Net) T() testing.TB {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.t
}
