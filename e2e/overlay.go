package e2e

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/shoal-dev/shoal/api"
)

// netnsDir is where named network namespaces live.
const netnsDir = "/run/netns"

// PrivateNetns gives h a mount namespace of its own in which /run/netns is
// a directory of the host's, as on a machine of its own: the host's shoal
// and containerd run there, so containerd sees the task namespaces shoal
// mounts (under `ip netns exec` alone they are mounted in a namespace
// containerd does not see), and no host's agent sees another's (each agent
// removes the shoal-* namespaces it does not know). A process holding the
// mount namespace runs until the run's teardown. It returns the directory.
// Use it with WithHostSetup.
func PrivateNetns(h *Host) string {
	t := h.net.T()
	t.Helper()
	dir := h.privateNetnsDir()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatalf("%s: netns dir: %v", h.Name, err)
	}
	cmd := exec.Command("unshare", "--mount", "--propagation", "slave", "sh", "-c",
		`mount --bind "$1" /run/netns && echo ready && exec sleep 1000000`, "sh", dir)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("%s: unshare: %v", h.Name, err)
	}
	h.net.owner.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	line, err := bufio.NewReader(out).ReadString('\n')
	if strings.TrimSpace(line) != "ready" {
		t.Fatalf("%s: private /run/netns: %q %v: %s", h.Name, line, err, stderr.String())
	}
	h.MountNS = fmt.Sprintf("/proc/%d/ns/mnt", cmd.Process.Pid)
	return dir
}

// NetnsDir is the directory holding h's named network namespaces: its own
// with PrivateNetns, else /run/netns.
func (h *Host) NetnsDir() string {
	if h.MountNS == "" {
		return netnsDir
	}
	return h.privateNetnsDir()
}

func (h *Host) privateNetnsDir() string { return filepath.Join(h.net.dir, h.Name+"-netns") }

// ShoalNetns lists the shoal-* entries of dir, sorted.
func ShoalNetns(dir string) []string {
	entries, _ := os.ReadDir(dir)
	var out []string
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), "shoal-") {
			out = append(out, e.Name())
		}
	}
	return out
}

var execSeq atomic.Uint64

// TaskExec runs `sh -c script` inside task taskID's container on h, through
// `ctr task exec` against h's containerd, and returns its combined output.
func (c *EngineCluster) TaskExec(h *Host, taskID, script string, timeout time.Duration) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	id := fmt.Sprintf("e2e-%d-%d", os.Getpid(), execSeq.Add(1))
	cmd := exec.CommandContext(ctx, "ctr", "-a", c.Engines[h.Name].Address, "-n", taskNamespace,
		"task", "exec", "--exec-id", id, taskID, "sh", "-c", script)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	if err != nil {
		if ctx.Err() != nil {
			err = fmt.Errorf("%w (%v)", ctx.Err(), err)
		}
		return out.String(), fmt.Errorf("%s: exec in task %s: %q: %w: %s", h.Name, shortID(taskID), script, err, strings.TrimSpace(out.String()))
	}
	return out.String(), nil
}

// InTaskNetns runs a host program inside the network namespace of task
// taskID's container on h (entered through the container's init process,
// which works whichever mount namespace holds the /run/netns mount).
func (c *EngineCluster) InTaskNetns(h *Host, taskID string, timeout time.Duration, name string, args ...string) (string, error) {
	cmd, cancel, err := c.taskNetnsCmd(h, taskID, timeout, name, args...)
	if err != nil {
		return "", err
	}
	defer cancel()
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s: %s %s in the netns of task %s: %w: %s", h.Name, name, strings.Join(args, " "), shortID(taskID), err, strings.TrimSpace(string(out)))
	}
	return string(out), nil
}

// taskNetnsCmd is the command InTaskNetns runs.
func (c *EngineCluster) taskNetnsCmd(h *Host, taskID string, timeout time.Duration, name string, args ...string) (*exec.Cmd, context.CancelFunc, error) {
	ctr, err := c.Engines[h.Name].Container(taskID)
	if err != nil {
		return nil, nil, err
	}
	if ctr.Pid == 0 {
		return nil, nil, fmt.Errorf("%s: container %s is not running (%q)", h.Name, shortID(taskID), ctr.Status)
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	cmd := exec.CommandContext(ctx, "nsenter", append([]string{"-t", strconv.Itoa(int(ctr.Pid)), "-n", "--", name}, args...)...)
	return cmd, cancel, nil
}

func shortID(id string) string { return id[:min(12, len(id))] }

var ipv4 = regexp.MustCompile(`\b(?:\d{1,3}\.){3}\d{1,3}\b`)

// NslookupAddrs reads the addresses busybox nslookup printed for the name
// asked: every IPv4 address after the first "Name:" line, sorted.
func NslookupAddrs(out string) []netip.Addr {
	_, answer, ok := strings.Cut(out, "Name:")
	if !ok {
		return nil
	}
	var addrs []netip.Addr
	for _, s := range ipv4.FindAllString(answer, -1) {
		if a, err := netip.ParseAddr(s); err == nil && !slices.Contains(addrs, a) {
			addrs = append(addrs, a)
		}
	}
	slices.SortFunc(addrs, netip.Addr.Compare)
	return addrs
}

// LBBackends reads `nft list table ip shoal_lb`: the addresses the rule for
// vip DNATs to (in the rule or in the named map it looks up), sorted, and
// whether there is a rule for vip at all.
func LBBackends(out string, vip netip.Addr) ([]netip.Addr, bool) {
	lines := strings.Split(out, "\n")
	var addrs []netip.Addr
	add := func(line string) {
		for _, s := range ipv4.FindAllString(line, -1) {
			if a, err := netip.ParseAddr(s); err == nil && a != vip && !slices.Contains(addrs, a) {
				addrs = append(addrs, a)
			}
		}
	}
	found := false
	for _, line := range lines {
		if !strings.Contains(line, "daddr "+vip.String()+" ") {
			continue
		}
		found = true
		add(line)
		_, ref, ok := strings.Cut(line, "map @")
		if !ok {
			continue
		}
		name := strings.Fields(ref)[0]
		in := false
		for _, l := range lines {
			switch {
			case strings.TrimSpace(l) == "map "+name+" {":
				in = true
			case in && strings.TrimSpace(l) == "}":
				in = false
			case in:
				add(l)
			}
		}
	}
	slices.SortFunc(addrs, netip.Addr.Compare)
	return addrs, found
}

// TaskAddr is a task's address on network networkID, or false.
func TaskAddr(t *api.Task, networkID string) (netip.Addr, bool) {
	for _, a := range t.Networks {
		if a.NetworkID != networkID {
			continue
		}
		if p, err := netip.ParsePrefix(a.Addr); err == nil {
			return p.Addr(), true
		}
	}
	return netip.Addr{}, false
}

// OverlayFootprint is what overlay networking leaves on a host: its links
// named sh* (bridges, VXLAN devices, veth ends) and the lines of its
// nftables ruleset.
type OverlayFootprint struct {
	Links    []string
	NFTLines int
}

// Footprint reads h's overlay footprint.
func (h *Host) Footprint() (OverlayFootprint, error) {
	var f OverlayFootprint
	out, err := ipCmd("-n", h.NS, "-o", "link")
	if err != nil {
		return f, fmt.Errorf("%s: ip -o link: %w: %s", h.Name, err, out)
	}
	for _, line := range strings.Split(out, "\n") {
		// "7: shb4097: <BROADCAST,..." and veths "9: she...@if2: ..."
		fields := strings.Fields(line)
		if len(fields) < 2 {
			continue
		}
		name, _, _ := strings.Cut(strings.TrimSuffix(fields[1], ":"), "@")
		if strings.HasPrefix(name, "sh") {
			f.Links = append(f.Links, name)
		}
	}
	slices.Sort(f.Links)
	rs, err := h.Exec("nft", "list", "ruleset")
	if err != nil {
		return f, fmt.Errorf("%s: nft list ruleset: %w: %s", h.Name, err, rs)
	}
	f.NFTLines = len(strings.Split(strings.TrimSpace(rs), "\n"))
	if strings.TrimSpace(rs) == "" {
		f.NFTLines = 0
	}
	return f, nil
}
