package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/shoal-dev/shoal/api"
	"github.com/shoal-dev/shoal/internal/testenv"
)

// iperfResult is the part of iperf3 -J output read here.
type iperfResult struct {
	End struct {
		SumSent struct {
			BitsPerSecond float64 `json:"bits_per_second"`
		} `json:"sum_sent"`
		SumReceived struct {
			BitsPerSecond float64 `json:"bits_per_second"`
		} `json:"sum_received"`
	} `json:"end"`
	Error string `json:"error"`
}

// iperf runs `iperf3 -s -1` through server and then `iperf3 -c ADDR -t N
// -J` through client, retrying the client until the server listens, and
// returns the received bits per second.
func iperf(t testing.TB, server *exec.Cmd, client func() *exec.Cmd) float64 {
	t.Helper()
	var serverOut strings.Builder
	server.Stdout, server.Stderr = &serverOut, &serverOut
	if err := server.Start(); err != nil {
		t.Fatalf("%s: %v", strings.Join(server.Args, " "), err)
	}
	defer func() {
		server.Process.Kill()
		server.Wait()
	}()
	var res iperfResult
	eventually(t, 30*time.Second, func() error {
		cmd := client()
		out, err := cmd.Output()
		res = iperfResult{}
		if jerr := json.Unmarshal(out, &res); jerr != nil {
			return fmt.Errorf("%s: %v (%v): %s", strings.Join(cmd.Args, " "), err, jerr, out)
		}
		if res.Error != "" || err != nil {
			return fmt.Errorf("%s: %v: %s (server: %s)", strings.Join(cmd.Args, " "), err, res.Error, serverOut.String())
		}
		return nil
	})
	return res.End.SumReceived.BitsPerSecond
}

// median is the middle of xs (the mean of the two middle ones for an even count).
func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// gbits formats bits per second samples as "1.23 2.34 ..." Gbit/s.
func gbits(xs []float64) string {
	parts := make([]string, len(xs))
	for i, x := range xs {
		parts[i] = fmt.Sprintf("%.2f", x/1e9)
	}
	return strings.Join(parts, " ")
}

// rawVXLAN is a kernel VXLAN device made by hand between two test hosts,
// outside Shoal: the baseline the overlay is compared with.
type rawVXLAN struct {
	name string
	vni  uint32
	port int
	// addrs are the addresses of the device on each host, in order.
	addrs [2]string
}

// addRawVXLAN creates device name with VNI vni on hosts a and b (local and
// remote their underlay addresses, MTU the underlay's less 50) with
// addresses 192.168.251.1 and .2, trying UDP port 4789 (Shoal's) first and
// 4790 if the kernel refuses it. The links go in t.Cleanup.
func addRawVXLAN(t testing.TB, a, b *Host, name string, vni uint32) rawVXLAN {
	t.Helper()
	underMTU := 1500
	if out, err := ipCmd("-n", a.NS, "-o", "link", "show", "eth0"); err == nil {
		f := strings.Fields(out)
		if i := slices.Index(f, "mtu"); i >= 0 && i+1 < len(f) {
			if n, err := strconv.Atoi(f[i+1]); err == nil {
				underMTU = n
			}
		}
	}
	v := rawVXLAN{name: name, vni: vni, addrs: [2]string{"192.168.251.1", "192.168.251.2"}}
	hosts := [2]*Host{a, b}
	for _, h := range hosts {
		t.Cleanup(func() { ipCmd("-n", h.NS, "link", "del", name) })
	}
	var errs []string
	for _, port := range []int{4789, 4790} {
		ok := true
		for i, h := range hosts {
			peer := hosts[1-i]
			if out, err := ipCmd("-n", h.NS, "link", "add", name, "type", "vxlan", "id", strconv.Itoa(int(vni)),
				"local", h.IP, "remote", peer.IP, "dstport", strconv.Itoa(port), "dev", "eth0"); err != nil {
				errs = append(errs, fmt.Sprintf("%s: port %d: %v: %s", h.Name, port, err, out))
				ok = false
				break
			}
		}
		if ok {
			v.port = port
			break
		}
		for _, h := range hosts {
			ipCmd("-n", h.NS, "link", "del", name)
		}
	}
	if v.port == 0 {
		t.Fatalf("raw VXLAN %s: %s", name, strings.Join(errs, "; "))
	}
	for i, h := range hosts {
		for _, args := range [][]string{
			{"link", "set", name, "mtu", strconv.Itoa(underMTU - 50)},
			{"addr", "add", v.addrs[i] + "/24", "dev", name},
			{"link", "set", name, "up"},
		} {
			if out, err := ipCmd(append([]string{"-n", h.NS}, args...)...); err != nil {
				t.Fatalf("%s: ip %s: %v: %s", h.Name, strings.Join(args, " "), err, out)
			}
		}
	}
	return v
}

// benchRounds is how many times each path is measured: SHOAL_E2E_BENCH_ROUNDS, else 3.
func benchRounds() int {
	if n, err := strconv.Atoi(os.Getenv("SHOAL_E2E_BENCH_ROUNDS")); err == nil && n > 0 {
		return n
	}
	return 3
}

// benchSeconds is how long one iperf3 measurement runs.
const benchSeconds = 5

// TestOverlayThroughput compares TCP throughput between two hosts over
// three paths, on the same two hosts in the same run: the underlay (host to
// host), a raw kernel VXLAN made by hand (host to host, another VNI) and
// Shoal's overlay (task to task). Each path is measured benchRounds times,
// alternating, and the medians are printed with their ratios. It runs only
// with SHOAL_E2E_BENCH=1 and needs iperf3 on the machine (the test image
// has none: iperf3 runs from the host inside the tasks' namespaces).
func TestOverlayThroughput(t *testing.T) {
	testenv.OptIn(t, "SHOAL_E2E_BENCH", "measures overlay throughput")
	requireEngine(t)
	requireOverlay(t)
	testenv.Command(t, "iperf3") // apt-get install -y iperf3
	shoalBin(t)
	c := newOverlayCluster(t, 1, 1)
	m, w1 := c.Managers[0], c.Workers[0]
	s := &services{c: c, m: m}
	s.run(t, "network", "create", "benchnet")
	var nets []api.Network
	if err := json.Unmarshal([]byte(s.run(t, "network", "inspect", "benchnet")), &nets); err != nil || len(nets) != 1 {
		t.Fatalf("network inspect benchnet: %v", err)
	}
	netID := nets[0].ID
	for _, h := range []*Host{m, w1} {
		s.run(t, "service", "create", "--name", "b"+h.Name, "--network", "benchnet", "--constraint", "node.hostname=="+h.Name,
			"--detach", c.Image, "sleep", "100000")
	}
	srvTasks, _ := s.wait(t, "b"+w1.Name, replicas(1))
	cliTasks, _ := s.wait(t, "b"+m.Name, replicas(1))
	srv, cli := Live(srvTasks)[0], Live(cliTasks)[0]
	srvIP, ok := TaskAddr(srv, netID)
	if !ok {
		t.Fatalf("task %s: no address on benchnet", srv.ID)
	}

	// The baseline: another VNI than Shoal's, same two hosts.
	raw := addRawVXLAN(t, m, w1, "rawvx0", nets[0].VNI+1000)

	cmdIn := func(h *Host, taskID string, args ...string) *exec.Cmd {
		cmd, cancel, err := c.taskNetnsCmd(h, taskID, 60*time.Second, "iperf3", args...)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(cancel)
		return cmd
	}
	inHost := func(h *Host, args ...string) *exec.Cmd {
		return exec.Command("ip", append([]string{"netns", "exec", h.NS, "iperf3"}, args...)...)
	}
	dur := strconv.Itoa(benchSeconds)
	// The overlay's first packets wait for the peer's FDB entry; let a
	// ping through before measuring (the raw VXLAN has a fixed remote; the
	// host has no ping, iperf3's retries cover its first ARP).
	eventually(t, 30*time.Second, func() error {
		_, err := c.TaskExec(m, cli.ID, "ping -c 1 -W 1 "+srvIP.String(), 10*time.Second)
		return err
	})

	paths := []struct {
		name    string
		measure func() float64
	}{
		{"underlay", func() float64 {
			return iperf(t, inHost(w1, "-s", "-1", "-B", w1.IP), func() *exec.Cmd {
				return inHost(m, "-c", w1.IP, "-t", dur, "-J")
			})
		}},
		{"raw vxlan", func() float64 {
			return iperf(t, inHost(w1, "-s", "-1", "-B", raw.addrs[1]), func() *exec.Cmd {
				return inHost(m, "-c", raw.addrs[1], "-t", dur, "-J")
			})
		}},
		{"shoal overlay", func() float64 {
			return iperf(t, cmdIn(w1, srv.ID, "-s", "-1"), func() *exec.Cmd {
				return cmdIn(m, cli.ID, "-c", srvIP.String(), "-t", dur, "-J")
			})
		}},
	}
	rounds := benchRounds()
	samples := make([][]float64, len(paths))
	began := time.Now()
	for r := range rounds {
		for i, p := range paths {
			bps := p.measure()
			samples[i] = append(samples[i], bps)
			t.Logf("round %d/%d: %s %.2f Gbit/s", r+1, rounds, p.name, bps/1e9)
		}
	}
	under, rawv, over := median(samples[0]), median(samples[1]), median(samples[2])

	mtu := func(out string) string {
		f := strings.Fields(out)
		if i := slices.Index(f, "mtu"); i >= 0 && i+1 < len(f) {
			return f[i+1]
		}
		return "?"
	}
	taskLink, _ := c.InTaskNetns(m, cli.ID, 10*time.Second, "ip", "-o", "link", "show", "eth0")
	hostLink, _ := ipCmd("-n", m.NS, "-o", "link", "show", "eth0")
	rawLink, _ := ipCmd("-n", m.NS, "-o", "link", "show", raw.name)
	report(t, "overlay throughput (%s -> %s, median of %d x %ds each, alternating, %.0fs in all):", m.Name, w1.Name, rounds, benchSeconds, time.Since(began).Seconds())
	report(t, "  underlay      %6.2f Gbit/s  host to host, MTU %s  [%s]", under/1e9, mtu(hostLink), gbits(samples[0]))
	report(t, "  raw vxlan     %6.2f Gbit/s  host to host, VNI %d port %d, MTU %s  [%s]  ratio to underlay %.3f",
		rawv/1e9, raw.vni, raw.port, mtu(rawLink), gbits(samples[1]), rawv/under)
	report(t, "  shoal overlay %6.2f Gbit/s  task to task, VNI %d, MTU %s  [%s]  ratio to underlay %.3f, to raw vxlan %.3f",
		over/1e9, nets[0].VNI, mtu(taskLink), gbits(samples[2]), over/under, over/rawv)
	report(t, "overlay throughput ratios: raw/underlay %.3f overlay/underlay %.3f overlay/raw %.3f (loss vs raw %.1f%%)",
		rawv/under, over/under, over/rawv, 100*(1-over/rawv))
	s.run(t, "service", "rm", "b"+m.Name, "b"+w1.Name)
}
