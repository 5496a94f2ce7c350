package e2e

import (
	"fmt"
	"net"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/shoal-dev/shoal/overlay/lb"
)

// ingressOf reads table shoal_ingress in h's namespace.
func ingressOf(h *Host) (lb.IngressState, error) {
	return lb.ReadIngress("/run/netns/" + h.NS)
}

// TestPublishOwnPortRefused: publishing a port Shoal uses itself is refused
// and changes nothing; the cluster stays healthy; the ingress table on every
// node follows the cluster state (a digest, the published port, nothing after
// service rm), and a stale table that reroutes 2377 does not survive a
// restart of the node it is on.
func TestPublishOwnPortRefused(t *testing.T) {
	c := NewEngineCluster(t, 1, 1, WithHostSetup(func(h *Host) { PrivateNetns(h) }))
	m := c.Managers[0]

	for _, p := range []string{"2377:80", "2378:80", "7946:53/udp", "4789:80/udp"} {
		out, err := m.Shoal("service", "create", "--name", "own", "--detach", "-p", p, c.Image)
		if err == nil || !strings.Contains(err.Error(), "Shoal's own") {
			t.Errorf("create -p %s: got %q, %v; want a refusal naming Shoal's own port", p, out, err)
		} else if p == "2377:80" {
			report(t, "FIGURE create -p 2377:80 refused: %s", err)
		}
	}
	if out, err := m.Shoal("service", "ls", "-q"); err != nil || strings.TrimSpace(out) != "" {
		t.Errorf("services after refused creates: got %q, %v; want none", out, err)
	}
	if out, err := m.Shoal("network", "ls"); err != nil || strings.Contains(out, "ingress") {
		t.Errorf("a refused publish made the ingress network: %q, %v", out, err)
	}
	if err := c.Settled(m); err != nil {
		t.Fatalf("cluster after refused publishes: %v", err)
	}
	if err := write(m, 10*time.Second, "w1", "after=refusal"); err != nil {
		t.Fatalf("a write after refused publishes: %v", err)
	}

	// A port of its own is published, every node derives the same table
	// from the cluster state, and the port answers everywhere.
	created := time.Now()
	if _, err := m.Shoal("service", "create", "--name", "web", "--replicas", "1", "--detach", "-p", "8080:80", c.Image); err != nil {
		t.Fatal(err)
	}
	answers := func() error {
		for _, h := range c.Hosts() {
			if err := httpGetPage(c.Registry, net.JoinHostPort(h.IP, "8080")); err != nil {
				return err
			}
		}
		return nil
	}
	eventually(t, convergeTimeout, answers)
	digest := sameIngress(t, c.Cluster, []uint16{8080})
	report(t, "FIGURE publish 8080: page served on every node and ingress table with digest %s everywhere %.2fs after create", digest, time.Since(created).Seconds())

	// A table rerouting 2377, as an older agent left it, on the only manager:
	// while it is there no node reaches the API; a restart must clear it.
	stale := "table ip shoal_ingress {\n" +
		" chain prerouting { type nat hook prerouting priority dstnat; policy accept; fib daddr type local tcp dport 2377 reject; }\n" +
		"}\n"
	if err := m.Daemon().Stop(); err != nil {
		t.Fatalf("stop %s: %v", m.Name, err)
	}
	nft := exec.Command("ip", "netns", "exec", m.NS, "nft", "-f", "-")
	nft.Stdin = strings.NewReader("delete table ip shoal_ingress\n" + stale)
	if out, err := nft.CombinedOutput(); err != nil {
		t.Fatalf("inject a stale table: %v: %s", err, out)
	}
	if st, err := ingressOf(m); err != nil || !slices.Contains(st.Ports, 2377) || st.Digest != "" {
		t.Fatalf("stale table: got %+v, %v; want 2377 without a digest", st, err)
	}
	restarted := time.Now()
	agent := c.Agent(m)
	c.WaitServing(t, m)
	if !strings.Contains(agent.Log(), "dropped a stale ingress table") {
		t.Errorf("%s's agent did not say it dropped the stale table at start", m.Name)
	}
	eventually(t, serveTimeout, func() error { return c.Settled(m) })
	settled := time.Since(restarted)
	eventually(t, convergeTimeout, answers)
	if got := sameIngress(t, c.Cluster, []uint16{8080}); got != digest {
		t.Errorf("digest after the restart: got %s, want %s (same state)", got, digest)
	}
	report(t, "FIGURE stale 2377 reject table on the manager: cluster settled %.2fs after its restart, table rebuilt from state, 8080 answering", settled.Seconds())

	// Nothing survives the service's removal.
	removed := time.Now()
	if _, err := m.Shoal("service", "rm", "web"); err != nil {
		t.Fatal(err)
	}
	eventually(t, serveTimeout, func() error {
		for _, h := range c.Hosts() {
			st, err := ingressOf(h)
			if err != nil {
				return err
			}
			if st.Present {
				return fmt.Errorf("%s: ingress table left after service rm: %+v", h.Name, st)
			}
		}
		return nil
	})
	report(t, "FIGURE service rm: no ingress table on any node %.2fs after", time.Since(removed).Seconds())
	if err := c.Settled(m); err != nil {
		t.Errorf("cluster at the end: %v", err)
	}
}

// sameIngress waits until every host of c holds an ingress table with a
// digest, the same on all, publishing exactly ports, and returns the digest.
func sameIngress(t *testing.T, c *Cluster, ports []uint16) string {
	t.Helper()
	var digest string
	eventually(t, serveTimeout, func() error {
		digest = ""
		for _, h := range c.Hosts() {
			st, err := ingressOf(h)
			if err != nil {
				return err
			}
			got := slices.Sorted(slices.Values(st.Ports))
			if !st.Present || st.Digest == "" || !slices.Equal(got, ports) {
				return fmt.Errorf("%s: ingress table %+v, want one with a digest publishing %v", h.Name, st, ports)
			}
			if digest != "" && st.Digest != digest {
				return fmt.Errorf("%s: digest %s, want %s as on the other nodes", h.Name, st.Digest, digest)
			}
			digest = st.Digest
		}
		return nil
	})
	return digest
}
