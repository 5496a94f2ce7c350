package e2e

import (
	"bufio"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/shoal-dev/shoal/internal/httpserve"
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

// goroutines reads go_goroutines from h's metrics endpoint.
func goroutines(from *Host, addr string) (int, error) {
	resp, err := from.HTTPClient(5 * time.Second).Get("http://" + addr + "/metrics")
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "go_goroutines "); ok {
			f, err := strconv.ParseFloat(v, 64)
			return int(f), err
		}
	}
	return 0, errors.New("no go_goroutines in /metrics")
}

// TestSlowClients: 1,500 connections without a certificate that send a body
// slowly do not pile up goroutines on the manager: they are capped, cut off
// at the body deadline, and the count returns to its baseline; the cluster
// keeps working meanwhile.
func TestSlowClients(t *testing.T) {
	const clients = 1500
	n := NewNet(t)
	c := &Cluster{Net: n, IDs: map[string]string{}}
	m := n.AddHost("m1")
	w := n.AddHost("w1")
	x := n.AddHost("x1") // the slow clients' machine, no shoal on it
	c.Managers, c.Workers = []*Host{m}, []*Host{w}
	metrics := net.JoinHostPort(m.IP, "9323")
	m.Init("--metrics-addr", metrics)
	c.WaitServing(t, m)
	w.Join(c.Token(t, m, "worker"), m.IP)
	c.WaitServing(t, w)
	c.WaitSettled(t, m)

	// Baseline: the lowest of a few reads once settled.
	baseline := 1 << 30
	for range 5 {
		g, err := goroutines(x, metrics)
		if err != nil {
			t.Fatal(err)
		}
		baseline = min(baseline, g)
		time.Sleep(200 * time.Millisecond)
	}

	// Dial in x's namespace, then handshake and send the headers in parallel.
	var raw []net.Conn
	err := inNetns(x.NS, func() error {
		for range clients {
			conn, err := net.DialTimeout("tcp", net.JoinHostPort(m.IP, "2377"), 5*time.Second)
			if err != nil {
				return err
			}
			raw = append(raw, conn)
		}
		return nil
	})
	t.Cleanup(func() {
		for _, c := range raw {
			c.Close()
		}
	})
	if err != nil {
		t.Fatalf("dial %d connections: %v (after %d)", clients, err, len(raw))
	}
	started := time.Now()
	var wg sync.WaitGroup
	var mu sync.Mutex
	answered := map[string]int{} // first response line (or error) -> connections
	sem := make(chan struct{}, 64)
	var conns []*tls.Conn
	for _, rc := range raw {
		tc := tls.Client(rc, &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS13, NextProtos: []string{"http/1.1"}})
		conns = append(conns, tc)
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			_ = tc.SetDeadline(time.Now().Add(10 * time.Second))
			_, err := io.WriteString(tc, "POST /v1/join HTTP/1.1\r\nHost: m1\r\nContent-Type: application/json\r\nContent-Length: 4096\r\n\r\n{")
			_ = tc.SetDeadline(time.Time{})
			if err != nil {
				mu.Lock()
				answered["write: "+err.Error()]++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	report(t, "FIGURE slow clients: %d connections without a certificate sent headers and 1 body byte in %.1fs", clients, time.Since(started).Seconds())

	// Each keeps trickling a byte every 2 s and reads whatever the server says.
	for _, tc := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			done := make(chan string, 1)
			go func() {
				line, err := bufio.NewReader(tc).ReadString('\n')
				if err != nil && line == "" {
					line = "closed: " + err.Error()
				}
				done <- strings.TrimSpace(line)
			}()
			tick := time.NewTicker(2 * time.Second)
			defer tick.Stop()
			for {
				select {
				case first := <-done:
					if i := strings.Index(first, "i/o timeout"); i >= 0 {
						first = "closed: timeout"
					}
					mu.Lock()
					answered[first]++
					mu.Unlock()
					return
				case <-tick.C:
					_ = tc.SetWriteDeadline(time.Now().Add(2 * time.Second))
					_, _ = io.WriteString(tc, " ")
				}
			}
		}()
	}

	// While they are held: the peak, and a working cluster.
	peak := baseline
	for i := range 10 {
		g, err := goroutines(x, metrics)
		if err != nil {
			t.Errorf("metrics during the slow clients: %v", err)
		}
		peak = max(peak, g)
		if i == 5 {
			if err := c.Settled(m); err != nil {
				t.Errorf("cluster during the slow clients: %v", err)
			}
			if err := write(m, 10*time.Second, "w1", "during=slowclients"); err != nil {
				t.Errorf("a write during the slow clients: %v", err)
			}
		}
		time.Sleep(time.Second)
	}

	// Back to the baseline once the body deadline (30 s) cut them off.
	var after int
	eventually(t, 90*time.Second, func() error {
		g, err := goroutines(x, metrics)
		if err != nil {
			return err
		}
		after = g
		if g > baseline+20 {
			return fmt.Errorf("%d goroutines, baseline %d", g, baseline)
		}
		return nil
	})
	wg.Wait()
	report(t, "FIGURE slow clients: manager goroutines %d -> peak %d -> %d, back %.1fs after the headers were sent (body deadline 30 s)", baseline, peak, after, time.Since(started).Seconds())
	keys := make([]string, 0, len(answered))
	for k := range answered {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		report(t, "FIGURE slow clients: %d answered %q", answered[k], k)
	}
	if peak > baseline+2*httpserve.DefaultMaxAnonymous+100 {
		t.Errorf("peak %d goroutines with baseline %d: more than the anonymous cap (%d) accounts for", peak, baseline, httpserve.DefaultMaxAnonymous)
	}
	if err := c.Settled(m); err != nil {
		t.Errorf("cluster after the slow clients: %v", err)
	}
}
