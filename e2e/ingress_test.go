package e2e

import (
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/shoal-dev/shoal/api"
	"github.com/shoal-dev/shoal/testimage"
)

// TestIngress publishes a port of a one-task service pinned to w1 and reaches
// it on every node's address: from a host outside the cluster (reg) to w2,
// which runs no task of it, from w2's own namespace to w2, and on w1 and m1.
func TestIngress(t *testing.T) {
	requireEngine(t)
	shoalBin(t)
	// Task namespaces must be visible to containerd: a private /run/netns per host.
	c := NewEngineCluster(t, 1, 2, WithHostSetup(func(h *Host) { PrivateNetns(h) }))
	m, w1, w2 := c.Managers[0], c.Workers[0], c.Workers[1]

	created := time.Now()
	if _, err := m.Shoal("service", "create", "--name", "web", "--replicas", "1", "--publish", "8080:80",
		"--constraint", "node.hostname=="+w1.Name, "--detach", c.Image); err != nil {
		t.Fatal(err)
	}
	eventually(t, convergeTimeout, func() error {
		tasks, err := Tasks(m, "web")
		if err != nil {
			return err
		}
		live := Live(tasks)
		if len(live) != 1 || live[0].Status.State != api.TaskRunning || live[0].NodeID != c.IDs[w1.Name] {
			return fmt.Errorf("want one running task on %s: %s", w1.Name, c.TaskSummary(tasks))
		}
		return nil
	})
	report(t, "web running on %s: %.2fs after service create", w1.Name, time.Since(created).Seconds())

	// Every node holds an ingress address, even those without a task.
	eventually(t, convergeTimeout, func() error {
		for _, h := range []*Host{m, w1, w2} {
			n, err := m.Inspect(h.Name)
			if err != nil {
				return err
			}
			if n.IngressAddr == "" {
				return fmt.Errorf("node %s has no ingress address", h.Name)
			}
		}
		return nil
	})

	cases := []struct {
		name string
		from *Host
		to   string
	}{
		{"outside host to a node without the task", c.Registry, w2.IP},
		{"a node without the task to itself", w2, w2.IP},
		{"a node without the task to its loopback", w2, "127.0.0.1"},
		{"outside host to the node with the task", c.Registry, w1.IP},
		{"outside host to the manager", c.Registry, m.IP},
		{"the node with the task to another node", w1, m.IP},
	}
	for _, tc := range cases {
		addr := net.JoinHostPort(tc.to, "8080")
		start := time.Now()
		eventually(t, convergeTimeout, func() error { return httpGetPage(tc.from, addr) })
		report(t, "%s (%s -> %s): page served, %.2fs", tc.name, tc.from.Name, addr, time.Since(start).Seconds())
		// Once it answers, it keeps answering.
		for i := range 5 {
			if err := httpGetPage(tc.from, addr); err != nil {
				t.Errorf("%s: request %d: %v", tc.name, i, err)
			}
		}
	}

	// A raw TCP exchange too, as a separate connection from w2's namespace.
	conn, err := w2.Dial(net.JoinHostPort(w2.IP, "8080"), 5*time.Second)
	if err != nil {
		t.Fatalf("dial %s:8080 from %s: %v", w2.IP, w2.Name, err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprintf(conn, "GET / HTTP/1.0\r\nHost: web\r\n\r\n")
	b, err := io.ReadAll(conn)
	if err != nil || !strings.Contains(string(b), testimage.IndexHTML) {
		t.Errorf("raw GET from %s: got %q, %v; want the page", w2.Name, b, err)
	}
}

// httpGetPage fetches http://addr/ with a connection from h and checks it is
// the test image's page.
func httpGetPage(h *Host, addr string) error {
	resp, err := h.HTTPClient(5 * time.Second).Get("http://" + addr + "/")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return fmt.Errorf("read from %s: %w", addr, err)
	}
	if resp.StatusCode != 200 || string(b) != testimage.IndexHTML {
		return fmt.Errorf("GET %s from %s: got %d %q, want 200 %q", addr, h.Name, resp.StatusCode, b, testimage.IndexHTML)
	}
	return nil
}
