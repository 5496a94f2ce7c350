package e2e

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/shoal-dev/shoal/api"
)

// TestSecrets delivers secrets and configs to real containers (issue 11) on
// one cluster of an autolocked manager and two workers: a task reads them at
// their paths with the owner and mode asked; their bytes (raw and base64) are
// in no file of any node's data directory, containerd root or state, or log;
// a worker without a task of the service never gets them; a rotation by
// update rolls the task; the restarted manager serves nothing until it is
// unlocked with the right key, and its raft files hold neither the CA key,
// the join tokens nor the secret.
func TestSecrets(t *testing.T) {
	requireEngine(t)
	shoalBin(t)
	metrics := func(h *Host) string { return net.JoinHostPort(h.IP, "9323") }
	c := NewEngineCluster(t, 1, 2, WithHostSetup(func(h *Host) { PrivateNetns(h) }),
		WithDaemonFlags(func(h *Host) []string {
			if h.Name == "m1" {
				return []string{"--metrics-addr", metrics(h), "--autolock"}
			}
			return nil
		}))
	m := c.Managers[0]
	s := &services{c: c, m: m}
	s.ready(t)

	secret := randomText(t, "e2e-secret-")
	secret2 := randomText(t, "e2e-secret2-")
	conf := "listen 80; # " + randomText(t, "conf-")
	files := t.TempDir()
	write := func(name, data string) string {
		p := filepath.Join(files, name)
		if err := os.WriteFile(p, []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	s.run(t, "secret", "create", "db_pw", write("s1", secret))
	s.run(t, "secret", "create", "db_pw_v2", write("s2", secret2), "--label", "v=2")
	s.run(t, "config", "create", "app_conf", write("c1", conf))
	for _, f := range []string{"s1", "s2"} {
		os.Remove(filepath.Join(files, f))
	}

	// ids of the nodes by hostname.
	nodeID := map[string]string{}
	nodes, err := m.Nodes()
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range nodes {
		nodeID[n.Description.Hostname] = n.ID
	}

	t.Run("bad input", func(t *testing.T) {
		for _, args := range [][]string{
			{"service", "create", "--name", "nope", "--secret", "missing", "--detach", c.Image},
			{"secret", "create", "db_pw", filepath.Join(files, "c1")},
			{"secret", "create", "x", filepath.Join(files, "no-such-file")},
			{"secret", "create", "", filepath.Join(files, "c1")},
		} {
			if out, err := m.Shoal(args...); err == nil {
				t.Errorf("shoal %s: succeeded (%s), want an error", strings.Join(args, " "), out)
			}
		}
		if out := s.run(t, "service", "ls", "-q"); strings.TrimSpace(out) != "" {
			t.Errorf("a refused create left services: %q", out)
		}
		if out := s.run(t, "secret", "inspect", "db_pw"); strings.Contains(out, secret) || strings.Contains(out, b64(secret)) || strings.Contains(out, `"data"`) {
			t.Errorf("secret inspect shows the data: %s", out)
		}
	})

	const probe = `for f in /run/secrets/db_pw /etc/app/pw /etc/app/app.conf; do echo "F $f $(sha256sum < $f | cut -d' ' -f1) $(stat -c %u:%g:%a $f)"; done; sleep 3600`
	s.run(t, "service", "create", "--name", "sec", "--replicas", "1", "--constraint", "node.hostname==w1",
		"--secret", "db_pw", "--secret", "source=db_pw,target=/etc/app/pw,uid=100,gid=101,mode=0400",
		"--config", "source=app_conf,target=/etc/app/app.conf,mode=0440", "--detach", c.Image, "sh", "-c", probe)

	t.Run("task reads its files", func(t *testing.T) {
		s.wait(t, "sec", replicas(1))
		want := map[string]string{
			"/run/secrets/db_pw": sha(secret) + " 0:0:444",
			"/etc/app/pw":        sha(secret) + " 100:101:400",
			"/etc/app/app.conf":  sha(conf) + " 0:0:440",
		}
		eventually(t, convergeTimeout, func() error { return probeOutput(m, "sec", want) })
	})

	t.Run("only the worker with the task got it", func(t *testing.T) {
		got := map[string]float64{}
		eventually(t, serveTimeout, func() error {
			var err error
			got, err = secretsSent(m, metrics(m))
			if err != nil {
				return err
			}
			if got[nodeID["w1"]] < 1 {
				return fmt.Errorf("w1 got %v secrets", got[nodeID["w1"]])
			}
			return nil
		})
		if n := got[nodeID["w2"]]; n != 0 {
			t.Errorf("w2, which runs no task of sec, was sent %v secrets", n)
		}
		if n := got[nodeID["m1"]]; n != 0 {
			t.Errorf("m1, which runs no task of sec, was sent %v secrets", n)
		}
		report(t, "FIGURE secrets sent: w1 %v, w2 %v, m1 %v", got[nodeID["w1"]], got[nodeID["w2"]], got[nodeID["m1"]])
	})

	t.Run("no secret on disk or in logs", func(t *testing.T) {
		// The grep can find things: the task's log on w1 holds its hash.
		if hits := grepTree(t, c.Workers[0].DataDir, sha(secret)); len(hits) == 0 {
			t.Fatal("the secret's hash, which the task printed, is in no file of w1's data dir: the grep finds nothing")
		}
		checkNoSecret(t, c, secret)
	})

	t.Run("rotation rolls the task", func(t *testing.T) {
		if _, err := m.Shoal("secret", "rm", "db_pw"); err == nil || !strings.Contains(err.Error(), "in use by service sec") {
			t.Errorf("secret rm of a used secret: %v, want refused naming sec", err)
		}
		// One --secret-rm drops every reference to db_pw, as docker's.
		s.run(t, "service", "update", "--detach", "--secret-rm", "db_pw", "--secret-add", "source=db_pw_v2,target=db_pw",
			"--secret-add", "source=db_pw_v2,target=/etc/app/pw,uid=100,gid=101,mode=0400", "sec")
		s.wait(t, "sec", func(tasks []*api.Task) error {
			live := Live(tasks)
			if len(live) != 1 || live[0].Status.State != api.TaskRunning || len(live[0].Spec.Secrets) == 0 || live[0].Spec.Secrets[0].Name != "db_pw_v2" {
				return fmt.Errorf("no task of the new spec running alone")
			}
			return nil
		})
		want := map[string]string{
			"/run/secrets/db_pw": sha(secret2) + " 0:0:444",
			"/etc/app/pw":        sha(secret2) + " 100:101:400",
			"/etc/app/app.conf":  sha(conf) + " 0:0:440",
		}
		eventually(t, convergeTimeout, func() error { return probeOutput(m, "sec", want) })
		eventually(t, convergeTimeout, func() error {
			_, err := m.Shoal("secret", "rm", "db_pw")
			return err
		})
		checkNoSecret(t, c, secret2)
	})

	t.Run("autolock", func(t *testing.T) {
		tokens := []string{}
		for _, role := range []string{"worker", "manager"} {
			tokens = append(tokens, strings.TrimSpace(s.run(t, "join-token", "-q", role)))
		}
		key := strings.TrimSpace(s.run(t, "unlock-key", "-q"))
		if !strings.HasPrefix(key, "SHLKEY-1-") {
			t.Fatalf("unlock-key -q: %q", key)
		}
		if err := m.Daemon().Stop(); err != nil {
			t.Logf("stop m1: %v", err)
		}
		raftDir := filepath.Join(m.DataDir, "raft")
		// The grep can find a private key: the node's own, in certs/.
		if len(grepTree(t, filepath.Join(m.DataDir, "certs"), "PRIVATE KEY")) == 0 {
			t.Fatal("no PRIVATE KEY found in m1's certs: the grep finds nothing")
		}
		for what, needle := range map[string]string{
			"the CA key": "PRIVATE KEY", "the worker token": tokens[0], "the manager token": tokens[1],
			"the unlock key": key, "the secret": secret2, "the secret (base64)": b64(secret2),
		} {
			if hits := grepTree(t, raftDir, needle); len(hits) > 0 {
				t.Errorf("raft files hold %s: %v", what, hits)
			}
		}
		if kf, err := os.Stat(filepath.Join(m.DataDir, "keys", "raft-dek.json")); err != nil || kf.Mode().Perm() != 0o600 {
			t.Errorf("key file: %v, %v; want mode 0600", kf, err)
		}

		m.startDaemon(append([]string{"agent", "--data-dir", m.DataDir}, c.daemonFlags(m)[:4]...)...)
		eventually(t, serveTimeout, func() error {
			_, err := m.Shoal("node", "ls")
			if err == nil {
				return fmt.Errorf("node ls answered on a locked manager")
			}
			if !strings.Contains(err.Error(), "locked") {
				return fmt.Errorf("node ls: %v, want it to say the manager is locked", err)
			}
			return nil
		})
		if out, err := unlock(m, "SHLKEY-1-"+strings.Repeat("A", 43)); err == nil || !strings.Contains(out, "wrong unlock key") {
			t.Errorf("unlock with a wrong key: %v %q, want refused", err, out)
		}
		if _, err := m.Shoal("service", "ls"); err == nil || !strings.Contains(err.Error(), "locked") {
			t.Errorf("after a wrong key: %v, want still locked", err)
		}
		start := time.Now()
		if out, err := unlock(m, key); err != nil {
			t.Fatalf("unlock: %v %s", err, out)
		}
		c.WaitServing(t, m)
		eventually(t, serveTimeout, func() error {
			out, err := m.Shoal("service", "ls")
			if err != nil || !strings.Contains(out, "sec") {
				return fmt.Errorf("service ls after unlock: %v %q", err, out)
			}
			return nil
		})
		report(t, "FIGURE autolock: unlock -> serving %.2fs", time.Since(start).Seconds())
		// The rotated key takes over: the key file follows the cluster's key.
		newKey := strings.TrimSpace(s.run(t, "unlock-key", "--rotate", "-q"))
		if newKey == key || !strings.HasPrefix(newKey, "SHLKEY-1-") {
			t.Fatalf("rotate: %q", newKey)
		}
		eventually(t, serveTimeout, func() error {
			if strings.Contains(m.Daemon().Log(), "key file wrapped with the cluster's unlock key") {
				return nil
			}
			return fmt.Errorf("key file not rewrapped yet")
		})
		checkNoSecret(t, c, secret2)
	})
}

func randomText(t *testing.T, prefix string) string {
	b := make([]byte, 12)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return prefix + hex.EncodeToString(b)
}

func sha(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:])
}

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

// probeOutput checks the lines "F PATH SHA UID:GID:MODE" of the service's
// latest running task against want.
func probeOutput(m *Host, svc string, want map[string]string) error {
	out, err := m.Shoal("service", "logs", svc)
	if err != nil {
		return err
	}
	// Old tasks' lines may be there too: each path needs one line as wanted.
	got := map[string][]string{}
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		for i, w := range f {
			if w == "F" && i+3 < len(f) {
				got[f[i+1]] = append(got[f[i+1]], f[i+2]+" "+f[i+3])
			}
		}
	}
	for path, w := range want {
		if !slices.Contains(got[path], w) {
			return fmt.Errorf("%s: got %q, want %q (logs:\n%s)", path, got[path], w, out)
		}
	}
	return nil
}

// secretsSent reads shoal_dispatcher_secrets_sent_total by node from the
// manager's metrics.
func secretsSent(from *Host, addr string) (map[string]float64, error) {
	resp, err := from.HTTPClient(5 * time.Second).Get("http://" + addr + "/metrics")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line, ok := strings.CutPrefix(sc.Text(), `shoal_dispatcher_secrets_sent_total{node="`)
		if !ok {
			continue
		}
		id, v, _ := strings.Cut(line, `"} `)
		f, err := strconv.ParseFloat(v, 64)
		if err != nil {
			return nil, err
		}
		out[id] = f
	}
	return out, nil
}

// checkNoSecret greps every node's data directory, containerd directory
// (root and state) and the daemons' logs for secret and its base64.
func checkNoSecret(t *testing.T, c *EngineCluster, secret string) {
	t.Helper()
	for _, h := range c.Hosts() {
		dirs := []string{h.DataDir, c.Engines[h.Name].dir}
		var logs []string
		for _, p := range h.Procs() {
			logs = append(logs, p.LogPath)
		}
		for _, needle := range []string{secret, b64(secret), strings.TrimRight(b64(secret), "=")} {
			for _, d := range dirs {
				if hits := grepTree(t, d, needle); len(hits) > 0 {
					t.Errorf("%s: %q found in %v", h.Name, needle, hits)
				}
			}
			for _, l := range logs {
				if b, _ := os.ReadFile(l); bytes.Contains(b, []byte(needle)) {
					t.Errorf("%s: %q found in log %s", h.Name, needle, l)
				}
			}
		}
	}
}

// grepTree lists the regular files under dir that hold needle, staying on
// dir's filesystem: a tmpfs mounted below (a task's secrets, in memory) is
// not disk.
func grepTree(t *testing.T, dir, needle string) []string {
	t.Helper()
	var root syscall.Stat_t
	if err := syscall.Stat(dir, &root); err != nil {
		t.Fatalf("stat %s: %v", dir, err)
	}
	var hits []string
	_ = filepath.Walk(dir, func(p string, info os.FileInfo, err error) error {
		if err != nil {
			return nil
		}
		if st, ok := info.Sys().(*syscall.Stat_t); ok && st.Dev != root.Dev {
			if info.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		if !info.Mode().IsRegular() {
			return nil
		}
		b, err := os.ReadFile(p)
		if err == nil && bytes.Contains(b, []byte(needle)) {
			hits = append(hits, p)
		}
		return nil
	})
	return hits
}

// unlock runs `shoal unlock` on h with key on stdin.
func unlock(h *Host, key string) (string, error) {
	cmd := exec.Command("ip", "netns", "exec", h.NS, shoalBin(h.net.T()), "-H", "unix://"+h.Socket(), "unlock")
	cmd.Stdin = strings.NewReader(key + "\n")
	out, err := cmd.CombinedOutput()
	return string(out), err
}
