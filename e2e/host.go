package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/shoal-dev/shoal/api"
)

// cliTimeout bounds one CLI command.
const cliTimeout = 30 * time.Second

// Host is one machine of a run: a network namespace with eth0 on the
// switch, a data dir, and the shoal processes started on it.
type Host struct {
	net  *Net
	Name string
	// NS is the network namespace.
	NS string
	// IP is eth0's address.
	IP      string
	DataDir string
	link    string // switch-side end of the veth pair
	// MountNS, if set (a /proc/PID/ns/mnt path), is the mount namespace the
	// host's programs run in, like a machine of its own (see PrivateNetns).
	MountNS string

	mu    sync.Mutex
	procs []*Proc
	// daemon is the latest shoal daemon started on this host.
	daemon *Proc
}

// Start runs `shoal ARGS...` in the host's namespace, output to a log file.
func (h *Host) Start(args ...string) *Proc {
	h.net.T().Helper()
	return h.StartProgram(shoalBin(h.net.T()), args...)
}

// StartProgram runs any program in the host's namespace like Start does.
func (h *Host) StartProgram(bin string, args ...string) *Proc {
	h.net.T().Helper()
	h.mu.Lock()
	logPath := filepath.Join(h.net.dir, fmt.Sprintf("%s-%d.log", h.Name, len(h.procs)+1))
	h.mu.Unlock()
	p, err := startProc(h, logPath, bin, args)
	if err != nil {
		h.net.T().Fatalf("%s: %v", h.Name, err)
	}
	h.mu.Lock()
	h.procs = append(h.procs, p)
	h.mu.Unlock()
	return p
}

// Procs returns every process started on the host.
func (h *Host) Procs() []*Proc {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]*Proc(nil), h.procs...)
}

// Daemon is the latest daemon started with Init, Join or Agent, or nil.
func (h *Host) Daemon() *Proc {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.daemon
}

func (h *Host) startDaemon(args ...string) *Proc {
	h.net.T().Helper()
	p := h.Start(args...)
	h.mu.Lock()
	h.daemon = p
	h.mu.Unlock()
	return p
}

// ContainerdAddress is a socket path that does not exist, so the engine is
// unavailable (no containerd in these scenarios).
func (h *Host) ContainerdAddress() string {
	return filepath.Join(h.DataDir+"-nocontainerd", "containerd.sock")
}

// Init starts `shoal init` (a new cluster) on the host.
func (h *Host) Init(extra ...string) *Proc {
	h.net.T().Helper()
	args := []string{"init", "--advertise-addr", h.IP, "--data-dir", h.DataDir, "--hostname", h.Name,
		"--containerd-address", h.ContainerdAddress()}
	return h.startDaemon(append(args, extra...)...)
}

// Join starts `shoal join` with token against the manager at managerIP.
func (h *Host) Join(token, managerIP string, extra ...string) *Proc {
	h.net.T().Helper()
	args := []string{"join", "--token", token, "--advertise-addr", h.IP, "--data-dir", h.DataDir,
		"--hostname", h.Name, "--containerd-address", h.ContainerdAddress()}
	args = append(args, extra...)
	return h.startDaemon(append(args, managerIP+":2377")...)
}

// Agent starts `shoal agent`, resuming the host's data dir.
func (h *Host) Agent() *Proc {
	h.net.T().Helper()
	return h.startDaemon("agent", "--data-dir", h.DataDir, "--containerd-address", h.ContainerdAddress())
}

// Socket is the daemon's unix socket.
func (h *Host) Socket() string { return filepath.Join(h.DataDir, "shoal.sock") }

// Shoal runs a CLI command in the host's namespace against its own socket
// and returns its stdout. The error carries the exit status and stderr.
func (h *Host) Shoal(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), cliTimeout)
	defer cancel()
	return h.ShoalCtx(ctx, args...)
}

// ShoalCtx is Shoal with a caller's deadline.
func (h *Host) ShoalCtx(ctx context.Context, args ...string) (string, error) {
	full := append([]string{"netns", "exec", h.NS, shoalBin(h.net.T()), "-H", "unix://" + h.Socket()}, args...)
	cmd := exec.CommandContext(ctx, "ip", full...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		if ctx.Err() != nil {
			err = fmt.Errorf("%w (%v)", ctx.Err(), err)
		}
		return stdout.String(), fmt.Errorf("%s: shoal %s: %w: %s", h.Name, strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return stdout.String(), nil
}

// Exec runs any command in the host's namespace and returns its combined output.
func (h *Host) Exec(name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), cliTimeout)
	defer cancel()
	out, err := exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", h.NS, name}, args...)...).CombinedOutput()
	return string(out), err
}

// Info is `shoal info --format json`.
func (h *Host) Info() (api.Info, error) {
	var info api.Info
	out, err := h.Shoal("info", "--format", "json")
	if err != nil {
		return info, err
	}
	if err := json.Unmarshal([]byte(out), &info); err != nil {
		return info, fmt.Errorf("%s: info: %w: %q", h.Name, err, out)
	}
	return info, nil
}

// Nodes is `shoal node ls --format json`.
func (h *Host) Nodes() ([]api.NodeView, error) {
	var nodes []api.NodeView
	out, err := h.Shoal("node", "ls", "--format", "json")
	if err != nil {
		return nil, err
	}
	if err := json.Unmarshal([]byte(out), &nodes); err != nil {
		return nil, fmt.Errorf("%s: node ls: %w: %q", h.Name, err, out)
	}
	return nodes, nil
}

// Inspect is `shoal node inspect NODE`, decoded.
func (h *Host) Inspect(node string) (api.NodeView, error) {
	var n api.NodeView
	out, err := h.Shoal("node", "inspect", node)
	if err != nil {
		return n, err
	}
	// Accept a single object or docker's one-element array.
	trimmed := strings.TrimSpace(out)
	if strings.HasPrefix(trimmed, "[") {
		var ns []api.NodeView
		if err := json.Unmarshal([]byte(trimmed), &ns); err != nil || len(ns) != 1 {
			return n, fmt.Errorf("%s: node inspect %s: want one node: %v: %q", h.Name, node, err, out)
		}
		return ns[0], nil
	}
	if err := json.Unmarshal([]byte(trimmed), &n); err != nil {
		return n, fmt.Errorf("%s: node inspect %s: %w: %q", h.Name, node, err, out)
	}
	return n, nil
}

// LinkDown cuts the host off the switch (on the switch side).
func (h *Host) LinkDown() {
	h.net.T().Helper()
	h.net.must("-n", h.net.Switch, "link", "set", h.link, "down")
}

// LinkUp plugs the host back in.
func (h *Host) LinkUp() {
	h.net.T().Helper()
	h.net.must("-n", h.net.Switch, "link", "set", h.link, "up")
}

// ResetDataDir points the host at a fresh, empty data dir.
func (h *Host) ResetDataDir() {
	h.net.T().Helper()
	h.mu.Lock()
	h.DataDir = filepath.Join(h.net.dir, fmt.Sprintf("%s-%d", h.Name, len(h.procs)+1))
	h.mu.Unlock()
	if err := os.MkdirAll(h.DataDir, 0o700); err != nil {
		h.net.T().Fatalf("data dir: %v", err)
	}
}
