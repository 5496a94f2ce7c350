package e2e

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/shoal-dev/shoal/api"
)

// pollInterval is how often eventually retries.
const pollInterval = 100 * time.Millisecond

// poll calls f until it returns nil or timeout passes, and returns how long
// it took and f's last error.
func poll(timeout time.Duration, f func() error) (time.Duration, error) {
	start := time.Now()
	for {
		err := f()
		if err == nil {
			return time.Since(start), nil
		}
		if time.Since(start) > timeout {
			return time.Since(start), err
		}
		time.Sleep(pollInterval)
	}
}

// eventually polls f until it returns nil; it fails the test with f's last
// error after timeout. It returns how long it took.
func eventually(t testing.TB, timeout time.Duration, f func() error) time.Duration {
	t.Helper()
	d, err := poll(timeout, f)
	if err != nil {
		t.Fatalf("still failing after %s: %v", timeout.Round(time.Millisecond), err)
	}
	return d
}

// Cluster is a shoal cluster on a Net: Managers[0] ran init.
type Cluster struct {
	Net      *Net
	Managers []*Host
	Workers  []*Host
	// IDs maps host name to node ID.
	IDs map[string]string
}

// serveTimeout bounds how long a daemon may take to serve its socket and
// how long a cluster may take to settle.
const serveTimeout = 60 * time.Second

// NewCluster starts managers+workers hosts m1.., w1..: init on m1, joins of
// the others, and waits until every node is ready.
func NewCluster(t testing.TB, managers, workers int) *Cluster {
	t.Helper()
	n := NewNet(t)
	c := &Cluster{Net: n, IDs: map[string]string{}}
	for i := 1; i <= managers; i++ {
		c.Managers = append(c.Managers, n.AddHost(fmt.Sprintf("m%d", i)))
	}
	for i := 1; i <= workers; i++ {
		c.Workers = append(c.Workers, n.AddHost(fmt.Sprintf("w%d", i)))
	}
	m1 := c.Managers[0]
	m1.Init()
	c.WaitServing(t, m1)
	mtok, wtok := c.Token(t, m1, "manager"), c.Token(t, m1, "worker")
	// Managers join one at a time: each is a raft configuration change.
	for _, m := range c.Managers[1:] {
		m.Join(mtok, m1.IP)
		c.WaitServing(t, m)
	}
	for _, w := range c.Workers {
		w.Join(wtok, m1.IP)
	}
	for _, w := range c.Workers {
		c.WaitServing(t, w)
	}
	c.WaitSettled(t, m1)
	return c
}

// Hosts is managers then workers.
func (c *Cluster) Hosts() []*Host { return append(append([]*Host(nil), c.Managers...), c.Workers...) }

// WaitServing waits until h's daemon answers `info` and records its node ID.
// It fails at once if the daemon exits.
func (c *Cluster) WaitServing(t testing.TB, h *Host) api.Info {
	t.Helper()
	var info api.Info
	eventually(t, serveTimeout, func() error {
		if p := h.Daemon(); p != nil && p.Exited() {
			t.Fatalf("%s: daemon exited (%s):\n%s", h.Name, p.state(), tail(p.Log(), 30))
		}
		var err error
		info, err = h.Info()
		if err != nil {
			return err
		}
		if info.NodeID == "" {
			return fmt.Errorf("%s: info has no node_id yet", h.Name)
		}
		return nil
	})
	c.IDs[h.Name] = info.NodeID
	return info
}

// Token is `join-token ROLE -q` on h.
func (c *Cluster) Token(t testing.TB, h *Host, role string) string {
	t.Helper()
	out, err := h.Shoal("join-token", role, "-q")
	if err != nil {
		t.Fatal(err)
	}
	tok := strings.TrimSpace(out)
	if tok == "" {
		t.Fatalf("%s: join-token %s -q printed nothing", h.Name, role)
	}
	return tok
}

// Settled checks, through h, that the cluster has every host of c as a
// ready node, one leader, every other manager reachable, and workers with
// no manager status.
func (c *Cluster) Settled(h *Host) error {
	nodes, err := h.Nodes()
	if err != nil {
		return err
	}
	return c.checkNodes(nodes)
}

func (c *Cluster) checkNodes(nodes []api.NodeView) error {
	want := len(c.Managers) + len(c.Workers)
	if len(nodes) != want {
		return fmt.Errorf("node ls: got %d nodes, want %d: %s", len(nodes), want, summary(nodes))
	}
	managers := map[string]bool{}
	for _, m := range c.Managers {
		managers[m.Name] = true
	}
	leaders := 0
	for _, n := range nodes {
		if n.Status.State != api.NodeStateReady {
			return fmt.Errorf("node %s: state %q, want ready: %s", n.Description.Hostname, n.Status.State, summary(nodes))
		}
		isManager := managers[n.Description.Hostname]
		if wantRole := map[bool]api.NodeRole{true: api.RoleManager, false: api.RoleWorker}[isManager]; n.Spec.Role != wantRole {
			return fmt.Errorf("node %s: role %q, want %q", n.Description.Hostname, n.Spec.Role, wantRole)
		}
		switch {
		case isManager && n.ManagerStatus == api.ManagerLeader:
			leaders++
		case isManager && n.ManagerStatus != api.ManagerReachable:
			return fmt.Errorf("manager %s: manager_status %q, want Leader or Reachable: %s", n.Description.Hostname, n.ManagerStatus, summary(nodes))
		case !isManager && n.ManagerStatus != "":
			return fmt.Errorf("worker %s: manager_status %q, want empty", n.Description.Hostname, n.ManagerStatus)
		}
	}
	if leaders != 1 {
		return fmt.Errorf("got %d leaders, want 1: %s", leaders, summary(nodes))
	}
	return nil
}

// WaitSettled waits until Settled holds through h.
func (c *Cluster) WaitSettled(t testing.TB, h *Host) {
	t.Helper()
	eventually(t, serveTimeout, func() error { return c.Settled(h) })
}

// Leader asks the given hosts in turn for the leader and returns the host
// whose node ID it is.
func (c *Cluster) Leader(from ...*Host) (*Host, error) {
	var errs []error
	for _, h := range from {
		info, err := h.Info()
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if info.LeaderID == "" {
			errs = append(errs, fmt.Errorf("%s: no leader", h.Name))
			continue
		}
		if l := c.HostByID(info.LeaderID); l != nil {
			return l, nil
		}
		errs = append(errs, fmt.Errorf("%s: leader %s is not a known host", h.Name, info.LeaderID))
	}
	return nil, errors.Join(errs...)
}

// HostByID finds the host with node ID id.
func (c *Cluster) HostByID(id string) *Host {
	for _, h := range c.Hosts() {
		if c.IDs[h.Name] == id {
			return h
		}
	}
	return nil
}

// Node finds a node by hostname.
func Node(nodes []api.NodeView, hostname string) (api.NodeView, bool) {
	for _, n := range nodes {
		if n.Description.Hostname == hostname {
			return n, true
		}
	}
	return api.NodeView{}, false
}

// summary is a one-line view of nodes for error messages.
func summary(nodes []api.NodeView) string {
	var parts []string
	for _, n := range nodes {
		ms := n.ManagerStatus
		if ms == "" {
			ms = "-"
		}
		parts = append(parts, fmt.Sprintf("%s/%s/%s/%s", n.Description.Hostname, n.Spec.Role, n.Status.State, ms))
	}
	return "[" + strings.Join(parts, " ") + "]"
}
