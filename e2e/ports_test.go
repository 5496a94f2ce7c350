package e2e

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/shoal-dev/shoal/api"
)

// peerServer is a command for the test image: busybox httpd on port 80 with
// a CGI script that answers the address the task sees its client at.
var peerServer = []string{"sh", "-c", `mkdir -p /tmp/w/cgi-bin && ` +
	`printf '#!/bin/sh\necho "Content-Type: text/plain"\necho\necho "$REMOTE_ADDR"\n' > /tmp/w/cgi-bin/peer && ` +
	`chmod +x /tmp/w/cgi-bin/peer && exec httpd -f -p 80 -h /tmp/w`}

// peerSeen asks the peer server at addr, from h, which client address it sees.
func peerSeen(h *Host, addr string) (string, error) {
	resp, err := h.HTTPClient(5 * time.Second).Get("http://" + addr + "/cgi-bin/peer")
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", fmt.Errorf("read from %s: %w", addr, err)
	}
	if resp.StatusCode != 200 {
		return "", fmt.Errorf("GET %s from %s: %d %q", addr, h.Name, resp.StatusCode, b)
	}
	// busybox httpd listens on IPv6 and writes [::ffff:A.B.C.D].
	seen := strings.Trim(strings.TrimSpace(string(b)), "[]")
	a, err := netip.ParseAddr(seen)
	if err != nil {
		return "", fmt.Errorf("GET %s from %s: peer %q: %w", addr, h.Name, b, err)
	}
	return a.Unmap().String(), nil
}

// refused checks that a TCP connection from h to addr is refused.
func connRefused(h *Host, addr string) error {
	c, err := h.Dial(addr, 3*time.Second)
	if err == nil {
		c.Close()
		return fmt.Errorf("%s -> %s: connected, want refused", h.Name, addr)
	}
	if !errors.Is(err, syscall.ECONNREFUSED) {
		return fmt.Errorf("%s -> %s: %v, want connection refused", h.Name, addr, err)
	}
	return nil
}

// TestPublishModes (issue 12 pts 2, 3): real containers on 1 manager + 2
// workers, a client outside the cluster (the registry's host).
//   - host mode: `mode=host,published=8443,target=80` with 2 replicas on the
//     workers answers only on the workers, each task sees the client's own
//     address; a third replica cannot be placed and says why.
//   - the routing mesh keeps the client's address, whether the node that
//     takes the connection runs the task (local backend) or not (the
//     connection crosses the overlay to the task's node and back).
//   - a port published on one host IP answers there only, not on the
//     node's other address nor on the other nodes.
func TestPublishModes(t *testing.T) {
	requireEngine(t)
	shoalBin(t)
	c := NewEngineCluster(t, 1, 2, WithHostSetup(func(h *Host) { PrivateNetns(h) }))
	m, w1, w2, client := c.Managers[0], c.Workers[0], c.Workers[1], c.Registry

	// A second address on w1, on the same switch.
	ip := netip.MustParseAddr(w1.IP).As4()
	ip[3] += 100
	w1IP2 := netip.AddrFrom4(ip).String()
	if out, err := w1.Exec("ip", "addr", "add", w1IP2+"/24", "dev", "eth0"); err != nil {
		t.Fatalf("add %s to %s: %v: %s", w1IP2, w1.Name, err, out)
	}

	create := func(args ...string) {
		t.Helper()
		args = append(append([]string{"service", "create", "--detach"}, args...), c.Image)
		if _, err := m.Shoal(append(args, peerServer...)...); err != nil {
			t.Fatal(err)
		}
	}
	start := time.Now()
	create("--name", "edge", "--replicas", "2", "--constraint", "node.role==worker",
		"--publish", "mode=host,published=8443,target=80")
	create("--name", "mesh", "--replicas", "1", "--constraint", "node.hostname=="+w2.Name,
		"--publish", "8090:80", "--publish", w1IP2+":8091:80")
	running := func(service string, want int) func() error {
		return func() error {
			tasks, err := Tasks(m, service)
			if err != nil {
				return err
			}
			if live := Live(tasks); len(live) != want {
				return fmt.Errorf("%s: want %d running: %s", service, want, c.TaskSummary(tasks))
			}
			return nil
		}
	}
	eventually(t, convergeTimeout, running("edge", 2))
	eventually(t, convergeTimeout, running("mesh", 1))
	report(t, "edge (2) and mesh (1) running: %.2fs", time.Since(start).Seconds())

	tasks, _ := Tasks(m, "edge")
	on := map[string]bool{}
	for _, tk := range Live(tasks) {
		on[tk.NodeID] = true
	}
	if !on[c.IDs[w1.Name]] || !on[c.IDs[w2.Name]] {
		t.Fatalf("edge tasks on %s, want one on each worker", c.TaskSummary(tasks))
	}

	// Host mode: each worker answers with its own task, which sees the client.
	for _, h := range []*Host{w1, w2} {
		addr := net.JoinHostPort(h.IP, "8443")
		var seen string
		eventually(t, convergeTimeout, func() (err error) {
			seen, err = peerSeen(client, addr)
			return err
		})
		if seen != client.IP {
			t.Errorf("host mode %s -> %s: the task saw %s, want the client's %s", client.Name, addr, seen, client.IP)
		}
		report(t, "host mode %s -> %s: the task saw %s (client %s)", client.Name, addr, seen, client.IP)
	}
	// ... and the node without a task does not bind the port.
	if err := connRefused(client, net.JoinHostPort(m.IP, "8443")); err != nil {
		t.Errorf("host-mode port on the node without a task: %v", err)
	}

	// A third replica has no node left with 8443 free (the constraint keeps it off the manager).
	if _, err := m.Shoal("service", "scale", "edge=3"); err != nil {
		t.Fatal(err)
	}
	eventually(t, convergeTimeout, func() error {
		tasks, err := Tasks(m, "edge")
		if err != nil {
			return err
		}
		for _, tk := range tasks {
			if tk.Status.State == api.TaskPending && strings.Contains(tk.Status.Err, "host port 8443/tcp in use") {
				return nil
			}
		}
		return fmt.Errorf("no pending task explaining the host port: %s", c.TaskSummary(tasks))
	})
	if out, err := m.Shoal("service", "ps", "--no-trunc", "edge"); err == nil {
		t.Logf("service ps edge:\n%s", out)
	}

	// The routing mesh: w2 runs mesh's task (local backend), w1 and m forward it over the overlay.
	for _, tc := range []struct {
		name string
		to   *Host
	}{{"local backend", w2}, {"remote backend", w1}, {"remote backend, manager", m}} {
		addr := net.JoinHostPort(tc.to.IP, "8090")
		var seen string
		eventually(t, convergeTimeout, func() (err error) {
			seen, err = peerSeen(client, addr)
			return err
		})
		if seen != client.IP {
			t.Errorf("ingress, %s: %s -> %s: the task saw %s, want the client's %s", tc.name, client.Name, addr, seen, client.IP)
		}
		report(t, "ingress, %s: %s -> %s: the task saw %s (client %s)", tc.name, client.Name, addr, seen, client.IP)
	}
	// From a node to its own published port: the task sees that node's address.
	if seen, err := peerSeen(w1, net.JoinHostPort(w1.IP, "8090")); err != nil || seen != w1.IP {
		t.Errorf("ingress from %s to itself: the task saw %q, %v; want %s", w1.Name, seen, err, w1.IP)
	}

	// Published on w1's second address only (ingress mode, the task on w2).
	addr := net.JoinHostPort(w1IP2, "8091")
	var seen string
	eventually(t, convergeTimeout, func() (err error) {
		seen, err = peerSeen(client, addr)
		return err
	})
	if seen != client.IP {
		t.Errorf("%s -> %s: the task saw %s, want %s", client.Name, addr, seen, client.IP)
	}
	for _, other := range []string{w1.IP, w2.IP, m.IP} {
		if err := connRefused(client, net.JoinHostPort(other, "8091")); err != nil {
			t.Errorf("port published on %s only: %v", w1IP2, err)
		}
	}
	report(t, "published on %s:8091: answers there, refused on %s, %s, %s", w1IP2, w1.IP, w2.IP, m.IP)

	out, err := m.Shoal("service", "ls")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "*:8443->80/tcp (host)") || !strings.Contains(out, w1IP2+":8091->80/tcp") {
		t.Errorf("service ls does not show the ports:\n%s", out)
	}
}
