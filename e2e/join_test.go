package e2e

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/shoal-dev/shoal/api"
	"github.com/shoal-dev/shoal/manager/ca"
)

// TestJoinAdmission: tokens stay out of /proc and logs; 50 joins at once
// with one token are rate-limited and make one node, not 50 of one name; a
// demoted manager's certificate is refused on the raft port.
func TestJoinAdmission(t *testing.T) {
	c := NewCluster(t, 3, 0)
	m1 := c.Managers[0]
	mtok, wtok := c.Token(t, m1, "manager"), c.Token(t, m1, "worker")

	t.Run("token_hidden", func(t *testing.T) {
		defer c.Net.Bind(t)()
		for _, h := range c.Managers[1:] {
			checkNoToken(t, h.Daemon(), mtok, wtok)
			cmdline := procFile(t, h.Daemon(), "cmdline")
			if !strings.Contains(cmdline, "--token-file") {
				t.Errorf("%s: cmdline %q: want the re-executed join reading --token-file", h.Name, cmdline)
			}
		}
		checkNoToken(t, m1.Daemon(), mtok, wtok)
	})

	t.Run("50_concurrent_joins", func(t *testing.T) {
		defer c.Net.Bind(t)()
		x := c.Net.AddHost("x1")
		const joins = 50
		codes := map[int]int{}
		var mu sync.Mutex
		var wg sync.WaitGroup
		hc := joinClient(x)
		start := time.Now()
		for range joins {
			wg.Add(1)
			go func() {
				defer wg.Done()
				code, err := rawJoin(hc, m1.IP, wtok, x.IP, "phan")
				mu.Lock()
				defer mu.Unlock()
				if err != nil {
					t.Errorf("join: %v", err)
					return
				}
				codes[code]++
			}()
		}
		wg.Wait()
		took := time.Since(start)
		report(t, "FIGURE 50 concurrent joins with one token from one address in %.2fs: %d admitted, %d refused as a duplicate name (409), %d rate-limited (429)",
			took.Seconds(), codes[http.StatusOK], codes[http.StatusConflict], codes[http.StatusTooManyRequests])
		if codes[http.StatusOK] != 1 || codes[http.StatusOK]+codes[http.StatusConflict]+codes[http.StatusTooManyRequests] != joins {
			t.Errorf("got answers %v, want one 200, the rest 409 or 429", codes)
		}
		// Burst 10: at least 50-10-(refill during the burst) are limited.
		if codes[http.StatusTooManyRequests] < joins-10-int(took.Seconds())-1 {
			t.Errorf("got %d answers 429, want at least %d", codes[http.StatusTooManyRequests], joins-10-int(took.Seconds())-1)
		}
		nodes, err := m1.Nodes()
		if err != nil {
			t.Fatal(err)
		}
		named := 0
		for _, n := range nodes {
			if n.Description.Hostname == "phan" {
				named++
			}
		}
		if named != 1 || len(nodes) != 4 {
			t.Errorf("got %d nodes named phan and %d nodes, want 1 and 4: %s", named, len(nodes), summary(nodes))
		}
		if out, err := m1.Shoal("node", "rm", "--force", "phan"); err != nil {
			t.Errorf("node rm phan: %v %s", err, out)
		}
	})

	t.Run("demoted_cert_refused", func(t *testing.T) {
		defer c.Net.Bind(t)()
		m3 := c.Managers[2]
		// The demoted node renews its certificate: keep the manager one.
		cert, err := tls.LoadX509KeyPair(filepath.Join(m3.DataDir, "certs", "node.crt"), filepath.Join(m3.DataDir, "certs", "node.key"))
		if err != nil {
			t.Fatal(err)
		}
		raftAddrs := []string{net.JoinHostPort(m1.IP, "2378"), net.JoinHostPort(c.Managers[1].IP, "2378")}
		for _, addr := range raftAddrs {
			if ok, err := raftAccepts(m3, addr, cert); err != nil || !ok {
				t.Fatalf("before demotion: raft at %s accepts m3's certificate: %v, %v; want true", addr, ok, err)
			}
		}
		start := time.Now()
		if out, err := m1.Shoal("node", "demote", "m3"); err != nil {
			t.Fatalf("demote m3: %v %s", err, out)
		}
		demoted := time.Since(start)
		eventually(t, roleWithin, func() error {
			for _, addr := range raftAddrs {
				ok, err := raftAccepts(m3, addr, cert)
				if err != nil {
					return err
				}
				if ok {
					return fmt.Errorf("raft at %s still accepts m3's manager certificate", addr)
				}
			}
			return nil
		})
		report(t, "FIGURE demoted manager's certificate refused on 2378 of both remaining managers %.2fs after the demote command started (the command took %.2fs; one probe ~10 ms)",
			time.Since(start).Seconds(), demoted.Seconds())
		code, err := getWithCert(m3, m1.IP, cert, "/v1/nodes")
		if err != nil || code != http.StatusForbidden {
			t.Errorf("GET /v1/nodes with the demoted manager's certificate: got %d, %v; want 403", code, err)
		}
	})
}

// TestJoinRateLimited: workers joining at once against a tight limit are
// told 429, wait and get in; each took its token another way, none shows it.
func TestJoinRateLimited(t *testing.T) {
	n := NewNet(t)
	c := &Cluster{Net: n, IDs: map[string]string{}}
	m1 := n.AddHost("m1")
	c.Managers = []*Host{m1}
	m1.Init("--join-burst", "1", "--join-rate", "0.5")
	c.WaitServing(t, m1)
	wtok := c.Token(t, m1, "worker")
	for i := 1; i <= 3; i++ {
		c.Workers = append(c.Workers, n.AddHost(fmt.Sprintf("w%d", i)))
	}
	w1, w2, w3 := c.Workers[0], c.Workers[1], c.Workers[2]
	start := time.Now()
	w1.Join(wtok, m1.IP)
	joinArgs := func(h *Host) []string {
		return []string{"join", "--advertise-addr", h.IP, "--data-dir", h.DataDir, "--hostname", h.Name,
			"--containerd-address", h.ContainerdAddress()}
	}
	// ip netns exec execs env, which execs shoal: one PID all along.
	w2.setDaemon(w2.StartProgram("env", append([]string{"SHOAL_TOKEN=" + wtok, shoalBin(t)}, append(joinArgs(w2), m1.IP)...)...))
	tokFile := filepath.Join(w3.DataDir + "-token")
	if err := os.WriteFile(tokFile, []byte(wtok+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	w3.startDaemon(append(joinArgs(w3), "--token-file", tokFile, m1.IP)...)
	for _, w := range c.Workers {
		c.WaitServing(t, w)
	}
	c.WaitSettled(t, m1)
	report(t, "FIGURE 3 workers joining at once with --join-burst 1 --join-rate 0.5: all ready %.2fs after the first start", time.Since(start).Seconds())
	limited := 0
	for _, w := range c.Workers {
		if strings.Contains(w.Daemon().Log(), "the manager limits joins") {
			limited++
		}
		checkNoToken(t, w.Daemon(), wtok)
	}
	checkNoToken(t, m1.Daemon(), wtok)
	if limited == 0 {
		t.Errorf("no worker log says it was rate-limited; want at least one")
	}
}

// setDaemon records p as the host's daemon.
func (h *Host) setDaemon(p *Proc) {
	h.mu.Lock()
	h.daemon = p
	h.mu.Unlock()
}

// procFile reads /proc/PID/name of p, NULs as spaces.
func procFile(t testing.TB, p *Proc, name string) string {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/%s", p.Pid(), name))
	if err != nil {
		t.Fatalf("%s: %v", p.Host.Name, err)
	}
	return string(bytes.ReplaceAll(b, []byte{0}, []byte{' '}))
}

// checkNoToken fails if a token shows in p's command line, environment or log.
func checkNoToken(t testing.TB, p *Proc, tokens ...string) {
	t.Helper()
	where := map[string]string{
		"/proc/PID/cmdline": procFile(t, p, "cmdline"),
		"/proc/PID/environ": procFile(t, p, "environ"),
		"daemon log":        p.Log(),
	}
	for what, text := range where {
		for _, tok := range tokens {
			if strings.Contains(text, tok) {
				t.Errorf("%s: a join token is in its %s", p.Host.Name, what)
			}
		}
	}
}

// joinClient is an HTTPS client from h that does not check the server:
// these joins test the manager, not the joining side.
func joinClient(h *Host) *http.Client {
	return &http.Client{
		Timeout: cliTimeout,
		Transport: &http.Transport{
			DialContext: func(ctx context.Context, _, addr string) (net.Conn, error) {
				return h.Dial(addr, 5*time.Second)
			},
			TLSClientConfig:   &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS13},
			DisableKeepAlives: true,
		},
	}
}

// rawJoin posts a join like a node would and returns the status code.
func rawJoin(hc *http.Client, managerIP, token, addr, hostname string) (int, error) {
	key, err := ca.NewKey()
	if err != nil {
		return 0, err
	}
	csr, err := ca.NewCSR(key)
	if err != nil {
		return 0, err
	}
	body, _ := json.Marshal(api.JoinRequest{
		Token: token, CSRPEM: string(csr), Addr: addr,
		Endpoints:   api.Endpoints{Gossip: net.JoinHostPort(addr, "7946")},
		Description: api.NodeDescription{Hostname: hostname},
	})
	resp, err := hc.Post("https://"+net.JoinHostPort(managerIP, "2377")+"/v1/join", "application/json", bytes.NewReader(body))
	if err != nil {
		return 0, err
	}
	resp.Body.Close()
	if resp.StatusCode == http.StatusTooManyRequests && resp.Header.Get("Retry-After") == "" {
		return 0, errors.New("429 without Retry-After")
	}
	return resp.StatusCode, nil
}

// raftAccepts reports whether the raft listener at addr keeps a TLS
// connection from h presenting cert. In TLS 1.3 the server checks the
// client's certificate after the client's handshake is done, so a refusal
// arrives as an alert on the first read; an accepted connection just waits
// for an RPC.
func raftAccepts(h *Host, addr string, cert tls.Certificate) (bool, error) {
	conn, err := h.Dial(addr, 3*time.Second)
	if err != nil {
		return false, err
	}
	tc := tls.Client(conn, &tls.Config{Certificates: []tls.Certificate{cert}, InsecureSkipVerify: true, MinVersion: tls.VersionTLS13})
	defer tc.Close()
	_ = tc.SetDeadline(time.Now().Add(3 * time.Second))
	if err := tc.Handshake(); err != nil {
		return false, fmt.Errorf("handshake with %s: %w", addr, err)
	}
	_ = tc.SetReadDeadline(time.Now().Add(700 * time.Millisecond))
	_, err = tc.Read(make([]byte, 1))
	var ne net.Error
	switch {
	case errors.As(err, &ne) && ne.Timeout():
		return true, nil
	case err != nil && strings.Contains(err.Error(), "remote error"):
		return false, nil
	}
	return false, fmt.Errorf("read from %s: %v", addr, err)
}

// getWithCert calls path on the manager at ip from h with cert.
func getWithCert(h *Host, ip string, cert tls.Certificate, path string) (int, error) {
	hc := joinClient(h)
	hc.Transport.(*http.Transport).TLSClientConfig.Certificates = []tls.Certificate{cert}
	resp, err := hc.Get("https://" + net.JoinHostPort(ip, "2377") + path)
	if err != nil {
		return 0, err
	}
	resp.Body.Close()
	return resp.StatusCode, nil
}
