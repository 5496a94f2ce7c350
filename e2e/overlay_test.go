package e2e

import (
	"encoding/json"
	"fmt"
	"maps"
	"net"
	"net/netip"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/shoal-dev/shoal/api"
	"github.com/shoal-dev/shoal/internal/testenv"
	"github.com/shoal-dev/shoal/overlay"
)

// apiScript serves "i am HOSTNAME" (the task ID's first 12 characters) on port 80.
const apiScript = `mkdir -p /www; echo "i am $(hostname)" > /www/index.html; exec httpd -f -p 80 -h /www`

// httpGet is the shell a client task runs to GET / from a name or address:
// busybox wget segfaults, so the request is written with nc.
func httpGet(target string) string {
	return fmt.Sprintf(`printf 'GET / HTTP/1.0\r\n\r\n' | nc -w 2 %s 80`, target)
}

// requireOverlay stops the test unless the tools it drives are installed
// (apt-get install -y containerd nftables util-linux).
func requireOverlay(t testing.TB) {
	t.Helper()
	for _, bin := range []string{"ctr", "nft", "nsenter", "unshare"} {
		testenv.Command(t, bin)
	}
}

// newOverlayCluster is NewEngineCluster with hosts like separate machines
// (see PrivateNetns).
func newOverlayCluster(t testing.TB, managers, workers int) *EngineCluster {
	t.Helper()
	return NewEngineCluster(t, managers, workers, WithHostSetup(func(h *Host) { PrivateNetns(h) }))
}

// overlayRun drives the overlay scenarios through the manager's CLI.
type overlayRun struct {
	*services
	netID string
	vip   netip.Addr
	cli   *api.Task
	// seen are every task of the run's services, for the leak check.
	seen map[string]bool
}

// netAddrs are the addresses of tasks on the run's network, sorted.
func (o *overlayRun) netAddrs(t testing.TB, tasks []*api.Task) []netip.Addr {
	t.Helper()
	var out []netip.Addr
	for _, tk := range tasks {
		a, ok := TaskAddr(tk, o.netID)
		if !ok {
			t.Fatalf("task %s: no address on network %s: %+v", tk.ID, o.netID, tk.Networks)
		}
		out = append(out, a)
	}
	slices.SortFunc(out, netip.Addr.Compare)
	return out
}

// cliExec runs script in the client task.
func (o *overlayRun) cliExec(script string) (string, error) {
	return o.c.TaskExec(o.c.HostByID(o.cli.NodeID), o.cli.ID, script, 20*time.Second)
}

// lookup is `nslookup NAME 127.0.0.11` in the client task.
func (o *overlayRun) lookup(name string) ([]netip.Addr, string, error) {
	out, err := o.cliExec("nslookup " + name + " 127.0.0.11")
	addrs := NslookupAddrs(out)
	if len(addrs) > 0 {
		// busybox also asks for AAAA and may exit 1 for "no answer" there.
		err = nil
	}
	return addrs, out, err
}

// lbBackends reads the client task's nftables map for the api VIP.
func (o *overlayRun) lbBackends() ([]netip.Addr, string, error) {
	out, err := o.c.InTaskNetns(o.c.HostByID(o.cli.NodeID), o.cli.ID, 10*time.Second, "nft", "list", "table", "ip", "shoal_lb")
	if err != nil {
		return nil, out, err
	}
	addrs, ok := LBBackends(out, o.vip)
	if !ok {
		return nil, out, fmt.Errorf("nft list table ip shoal_lb: no rule for VIP %s:\n%s", o.vip, out)
	}
	return addrs, out, nil
}

// whoAnswered maps an "i am HOSTNAME" answer to its task.
func whoAnswered(out string, tasks []*api.Task) (*api.Task, string) {
	i := strings.LastIndex(out, "i am ")
	if i < 0 {
		return nil, ""
	}
	name := strings.TrimSpace(strings.SplitN(out[i+len("i am "):], "\n", 2)[0])
	for _, tk := range tasks {
		if name != "" && strings.HasPrefix(tk.ID, name) {
			return tk, name
		}
	}
	return nil, name
}

// TestOverlay runs the overlay network scenarios, in order, on one cluster
// of a manager and two workers with containerd: discovery and a request
// across hosts, load balancing, bad input, a lost node leaving DNS and the
// VIP, and no leftovers once services and network are gone.
func TestOverlay(t *testing.T) {
	requireEngine(t)
	requireOverlay(t)
	shoalBin(t)
	start := time.Now()
	c := newOverlayCluster(t, 1, 2)
	report(t, "overlay: cluster of 1 manager and 2 workers with containerd ready: %.2fs", time.Since(start).Seconds())
	m, w1, w2 := c.Managers[0], c.Workers[0], c.Workers[1]
	base := []*Host{m, w1, w2}
	o := &overlayRun{services: &services{c: c, m: m}, seen: map[string]bool{}}

	before := map[string]OverlayFootprint{}
	for _, h := range base {
		f, err := h.Footprint()
		if err != nil {
			t.Fatal(err)
		}
		before[h.Name] = f
	}
	t.Logf("footprint before the services: %v", before)

	t.Run("discovery", func(t *testing.T) {
		defer c.Net.Bind(t)()
		o.netID = strings.TrimSpace(o.run(t, "network", "create", "appnet"))
		var nets []api.Network
		out := o.run(t, "network", "inspect", "appnet")
		if err := json.Unmarshal([]byte(out), &nets); err != nil || len(nets) != 1 || nets[0].ID != o.netID {
			t.Fatalf("network inspect appnet: got %s (%v), want network %s", out, err, o.netID)
		}
		t.Logf("network appnet: %s subnet %s gateway %s VNI %d", nets[0].ID, nets[0].Spec.Subnet, nets[0].Gateway, nets[0].VNI)

		created := time.Now()
		o.run(t, "service", "create", "--name", "api", "--network", "appnet", "--replicas", "3", "--stop-grace-period", "1s", "--detach",
			c.Image, "sh", "-c", apiScript)
		o.run(t, "service", "create", "--name", "cli", "--network", "appnet", "--replicas", "1",
			"--constraint", "node.hostname=="+m.Name, "--stop-grace-period", "1s", "--detach", c.Image, "sleep", "100000")
		apiTasks, _ := o.wait(t, "api", func(tasks []*api.Task) error {
			if err := replicas(3)(tasks); err != nil {
				return err
			}
			if got, want := o.perNode(Live(tasks)), map[string]int{"m1": 1, "w1": 1, "w2": 1}; !maps.Equal(got, want) {
				return fmt.Errorf("running tasks per node: got %v, want %v", got, want)
			}
			return nil
		})
		cliTasks, _ := o.wait(t, "cli", replicas(1))
		report(t, "overlay: api (3 replicas, one per host) and cli running %.2fs after service create", time.Since(created).Seconds())
		apiLive := Live(apiTasks)
		o.cli = Live(cliTasks)[0]
		for _, tk := range append(slices.Clone(apiLive), o.cli) {
			o.seen[tk.ID] = true
		}
		if h := c.HostByID(o.cli.NodeID); h != m {
			t.Fatalf("cli task %s on %v, want %s (constraint)", o.cli.ID, h, m.Name)
		}
		taskIPs := o.netAddrs(t, apiLive)
		t.Logf("api tasks: %s, addresses %v; cli task %s on %s at %v", c.TaskSummary(apiLive), taskIPs, shortID(o.cli.ID), m.Name, o.netAddrs(t, []*api.Task{o.cli}))

		var views []api.ServiceView
		out = o.run(t, "service", "inspect", "api")
		if err := json.Unmarshal([]byte(out), &views); err != nil || len(views) != 1 {
			t.Fatalf("service inspect api: %v: %s", err, out)
		}
		for _, v := range views[0].Endpoint.VIPs {
			if p, err := netip.ParsePrefix(v.Addr); err == nil && v.NetworkID == o.netID {
				o.vip = p.Addr()
			}
		}
		if !o.vip.IsValid() {
			t.Fatalf("service inspect api: no VIP on network %s: %+v", o.netID, views[0].Endpoint)
		}
		for _, a := range taskIPs {
			if a == o.vip {
				t.Errorf("VIP %s is also a task address: %v", o.vip, taskIPs)
			}
		}

		d := eventually(t, 30*time.Second, func() error {
			got, out, err := o.lookup("api")
			if err != nil {
				return err
			}
			if want := []netip.Addr{o.vip}; !slices.Equal(got, want) {
				return fmt.Errorf("nslookup api 127.0.0.11: got %v, want the VIP %v:\n%s", got, want, out)
			}
			got, out, err = o.lookup("tasks.api")
			if err != nil {
				return err
			}
			if !slices.Equal(got, taskIPs) {
				return fmt.Errorf("nslookup tasks.api 127.0.0.11: got %v, want the task addresses %v:\n%s", got, taskIPs, out)
			}
			return nil
		})
		report(t, "overlay: from the cli task, api resolves to the VIP %s and tasks.api to %v (%.2fs after the tasks ran)", o.vip, taskIPs, d.Seconds())

		// Requests by name go through the VIP's round robin, so a few
		// reach a task on another host than the client's.
		var answered []string
		d = eventually(t, 30*time.Second, func() error {
			out, err := o.cliExec(httpGet("api"))
			if err != nil {
				return err
			}
			tk, name := whoAnswered(out, apiLive)
			if tk == nil {
				return fmt.Errorf("GET http://api/: answer %q names no api task", out)
			}
			h := c.HostByID(tk.NodeID)
			answered = append(answered, name+"@"+h.Name)
			if h == m {
				return fmt.Errorf("GET http://api/ answered by %s on the client's host %s", name, h.Name)
			}
			return nil
		})
		report(t, "overlay: GET http://api/ from %s reached a task on another host (answers %v, %.2fs)", m.Name, answered, d.Seconds())

		// What the leak check later wants gone.
		for _, h := range base {
			f, err := h.Footprint()
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("%s with tasks on appnet: links %v, %d nft ruleset lines, task netns %v", h.Name, f.Links, f.NFTLines, ShoalNetns(h.NetnsDir()))
		}
		if rs, err := c.InTaskNetns(m, o.cli.ID, 10*time.Second, "nft", "list", "ruleset"); err != nil {
			t.Error(err)
		} else {
			t.Logf("nft ruleset in the cli task's netns: %d lines", len(strings.Split(strings.TrimSpace(rs), "\n")))
		}
	})

	t.Run("balancing", func(t *testing.T) {
		defer c.Net.Bind(t)()
		testenv.After(t, o.cli != nil, "no client task: discovery failed")
		const n = 30
		tasks, err := Tasks(m, "api")
		if err != nil {
			t.Fatal(err)
		}
		script := fmt.Sprintf(`for i in $(seq %d); do %s; echo; done`, n, httpGet("api"))
		began := time.Now()
		out, err := c.TaskExec(m, o.cli.ID, script, 60*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		took := time.Since(began)
		counts := map[string]int{}
		ok := 0
		for _, resp := range strings.Split(out, "HTTP/1.") {
			if tk, name := whoAnswered(resp, tasks); tk != nil {
				counts[name+"@"+c.HostByID(tk.NodeID).Name]++
				ok++
			}
		}
		report(t, "overlay: %d requests to http://api/ in %.2fs: %d answered, by %v", n, took.Seconds(), ok, counts)
		if ok != n {
			t.Errorf("got %d answers from api tasks, want %d:\n%s", ok, n, out)
		}
		if len(counts) < 2 {
			t.Errorf("answers came from %d distinct tasks %v, want at least 2", len(counts), counts)
		}
	})

	t.Run("outside", func(t *testing.T) {
		defer c.Net.Bind(t)()
		testenv.After(t, o.cli != nil, "no client task: discovery failed")
		// A listener on the registry host, outside the overlay: the cli task
		// reaches it through m1's gateway bridge, masqueraded to m1's address.
		reg := c.Registry
		var ln net.Listener
		if err := overlay.InNetns(filepath.Join(netnsDir, reg.NS), func() (err error) {
			ln, err = net.Listen("tcp", net.JoinHostPort(reg.IP, "0"))
			return err
		}); err != nil {
			t.Fatalf("listen on %s: %v", reg.Name, err)
		}
		defer ln.Close()
		from := make(chan netip.Addr, 16)
		go func() {
			for {
				conn, err := ln.Accept()
				if err != nil {
					return
				}
				if ap, err := netip.ParseAddrPort(conn.RemoteAddr().String()); err == nil {
					from <- ap.Addr()
				}
				conn.Close()
			}
		}()
		d := eventually(t, 30*time.Second, func() error {
			_, err := o.cliExec(fmt.Sprintf("echo hello | nc -w 2 %s %d", reg.IP, ln.Addr().(*net.TCPAddr).Port))
			return err
		})
		select {
		case got := <-from:
			if want := netip.MustParseAddr(m.IP); got != want {
				t.Errorf("%s saw the cli task's connection come from %s, want %s's address %s (masquerade)", reg.Name, got, m.Name, want)
			}
			report(t, "overlay: the cli task on %s reached %s:%s outside the overlay, seen from %s (%.2fs)", m.Name, reg.Name, ln.Addr(), got, d.Seconds())
		case <-time.After(10 * time.Second):
			t.Fatalf("%s accepted no connection from the cli task", reg.Name)
		}
		if out, err := c.InTaskNetns(m, o.cli.ID, 10*time.Second, "ip", "-4", "route", "show", "default"); err != nil {
			t.Error(err)
		} else if !strings.Contains(out, "via 172.18.0.1 dev gw0") {
			t.Errorf("default route in the cli task: got %q, want via 172.18.0.1 dev gw0", out)
		}
	})

	t.Run("bad_input", func(t *testing.T) {
		defer c.Net.Bind(t)()
		testenv.After(t, o.netID != "", "no network: discovery failed")
		var nets []api.Network
		out := o.run(t, "network", "inspect", "appnet")
		if err := json.Unmarshal([]byte(out), &nets); err != nil || len(nets) != 1 {
			t.Fatalf("network inspect appnet: %v: %s", err, out)
		}
		sub := netip.MustParsePrefix(nets[0].Spec.Subnet)
		overlapping := netip.PrefixFrom(sub.Addr(), sub.Bits()-1).Masked().String()
		netsBefore := o.run(t, "network", "ls", "--format", "json")
		svcsBefore := o.run(t, "service", "ls", "-q")
		for _, tc := range []struct {
			name string
			args []string
			want string // in the error, case-insensitive
		}{
			{"overlapping subnet", []string{"network", "create", "--subnet", overlapping, "bad1"}, "overlap"},
			{"/30 subnet", []string{"network", "create", "--subnet", "10.200.0.0/30", "bad2"}, "too small"},
			{"rm of a network in use", []string{"network", "rm", "appnet"}, "used by service"},
			{"service on an unknown network", []string{"service", "create", "--name", "bad3", "--network", "nosuchnet", "--detach", c.Image}, "nosuchnet"},
		} {
			out, err := m.Shoal(tc.args...)
			if err == nil {
				t.Errorf("%s: shoal %s: succeeded (%q), want an error", tc.name, strings.Join(tc.args, " "), out)
				continue
			}
			if !strings.Contains(strings.ToLower(err.Error()), tc.want) {
				t.Errorf("%s: got error %v, want it to mention %q", tc.name, err, tc.want)
				continue
			}
			report(t, "overlay: bad input, %s: %v", tc.name, err)
		}
		if got := o.run(t, "network", "ls", "--format", "json"); got != netsBefore {
			t.Errorf("network ls after bad input: got %s, want unchanged %s", got, netsBefore)
		}
		if got := o.run(t, "service", "ls", "-q"); got != svcsBefore {
			t.Errorf("service ls -q after bad input: got %q, want unchanged %q", got, svcsBefore)
		}
	})

	t.Run("node_loss", func(t *testing.T) {
		defer c.Net.Bind(t)()
		testenv.After(t, o.cli != nil && o.vip.IsValid(), "no client task or VIP: discovery failed")
		tasks, _ := o.wait(t, "api", replicas(3))
		lostTasks := Live(o.onNode(tasks, w2))
		if len(lostTasks) == 0 {
			t.Fatalf("no api task on %s: %s", w2.Name, c.TaskSummary(tasks))
		}
		lost := o.netAddrs(t, lostTasks)
		all := o.netAddrs(t, Live(tasks))
		if got, out, err := o.lbBackends(); err != nil || !slices.Equal(got, all) {
			t.Fatalf("before the loss: VIP %s backends: got %v (%v), want %v:\n%s", o.vip, got, err, all, out)
		}
		excludes := func(addrs []netip.Addr) bool {
			for _, a := range lost {
				if slices.Contains(addrs, a) {
					return false
				}
			}
			return true
		}

		killed := time.Now()
		w2.Daemon().Kill()
		c.Engines[w2.Name].Kill()
		var dnsGone, lbGone time.Duration
		var lastDNS, lastLB string
		_, err := poll(60*time.Second, func() error {
			if dnsGone == 0 {
				got, out, err := o.lookup("tasks.api")
				lastDNS = out
				if err == nil && excludes(got) {
					dnsGone = time.Since(killed)
				}
			}
			if lbGone == 0 {
				got, out, err := o.lbBackends()
				lastLB = out
				if err == nil && excludes(got) {
					lbGone = time.Since(killed)
				}
			}
			if dnsGone == 0 || lbGone == 0 {
				return fmt.Errorf("lost %s's addresses %v: still in tasks.api: %v, still VIP backends: %v", w2.Name, lost, dnsGone == 0, lbGone == 0)
			}
			return nil
		})
		if err != nil {
			t.Fatalf("60s after kill -9 of %s's shoal and containerd: %v\nnslookup tasks.api:\n%s\nnft list table ip shoal_lb:\n%s", w2.Name, err, lastDNS, lastLB)
		}
		report(t, "overlay: kill -9 of %s's shoal and containerd: its task %v left tasks.api after %.2fs, the VIP backends after %.2fs",
			w2.Name, lost, dnsGone.Seconds(), lbGone.Seconds())
		const limit = 5 * time.Second
		if dnsGone > limit || lbGone > limit {
			t.Errorf("lost task left tasks.api after %.2fs and the VIP backends after %.2fs, want both within %s", dnsGone.Seconds(), lbGone.Seconds(), limit)
		}

		// The replacement joins DNS and the VIP.
		tasks, _ = o.wait(t, "api", func(tasks []*api.Task) error {
			if err := replicas(3)(tasks); err != nil {
				return err
			}
			if n := len(Live(o.onNode(tasks, w2))); n > 0 {
				return fmt.Errorf("%d tasks still meant to run on lost %s", n, w2.Name)
			}
			return nil
		})
		for _, tk := range tasks {
			o.seen[tk.ID] = true
		}
		want := o.netAddrs(t, Live(tasks))
		eventually(t, 30*time.Second, func() error {
			got, out, err := o.lookup("tasks.api")
			if err != nil {
				return err
			}
			if !slices.Equal(got, want) {
				return fmt.Errorf("nslookup tasks.api: got %v, want %v:\n%s", got, want, out)
			}
			got, out, err = o.lbBackends()
			if err != nil {
				return err
			}
			if !slices.Equal(got, want) {
				return fmt.Errorf("VIP %s backends: got %v, want %v:\n%s", o.vip, got, want, out)
			}
			return nil
		})
		report(t, "overlay: replacement in tasks.api and the VIP backends %v, %.2fs after kill", want, time.Since(killed).Seconds())

		// Bring w2 back so that its agent removes what its stale task left.
		c.Engines[w2.Name].Start()
		c.Agent(w2)
		c.WaitServing(t, w2)
		o.ready(t)
		o.wait(t, "api", func(tasks []*api.Task) error {
			for _, tk := range o.onNode(tasks, w2) {
				if tk.DesiredState != api.TaskRunning && !tk.Status.State.Terminal() {
					return fmt.Errorf("stale task %s on %s: %s, want shut down", tk.ID, w2.Name, tk.Status.State)
				}
			}
			return nil
		})
	})

	t.Run("cleanup", func(t *testing.T) {
		defer c.Net.Bind(t)()
		for _, svc := range []string{"api", "cli"} {
			tasks, err := Tasks(m, svc)
			if err != nil {
				t.Fatal(err)
			}
			for _, tk := range tasks {
				o.seen[tk.ID] = true
			}
		}
		o.run(t, "service", "rm", "api", "cli")
		removed := time.Now()
		eventually(t, convergeTimeout, func() error {
			out, err := m.Shoal("service", "ls", "-q")
			if err != nil {
				return err
			}
			if strings.TrimSpace(out) != "" {
				return fmt.Errorf("service ls -q after rm: %q", out)
			}
			return nil
		})
		if o.netID != "" {
			eventually(t, 30*time.Second, func() error {
				_, err := m.Shoal("network", "rm", "appnet")
				return err
			})
		}
		eventually(t, 60*time.Second, func() error {
			for _, h := range base {
				f, err := h.Footprint()
				if err != nil {
					return err
				}
				if b := before[h.Name]; !slices.Equal(f.Links, b.Links) || f.NFTLines != b.NFTLines {
					return fmt.Errorf("%s: links %v and %d nft ruleset lines, want %v and %d as before the services",
						h.Name, f.Links, f.NFTLines, b.Links, b.NFTLines)
				}
				running, err := c.Engines[h.Name].Running()
				if err != nil {
					return err
				}
				if len(running) > 0 {
					return fmt.Errorf("%s: containers still running: %v", h.Name, short(running))
				}
			}
			for _, h := range base {
				if ns := ShoalNetns(h.NetnsDir()); len(ns) > 0 {
					return fmt.Errorf("%s: shoal netns left in %s: %v", h.Name, h.NetnsDir(), ns)
				}
			}
			return nil
		})
		report(t, "overlay: services and network removed: links, nft rules and task netns of %d tasks gone %.2fs after service rm", len(o.seen), time.Since(removed).Seconds())
	})
}

// TestOverlayParsers checks the readers of nslookup and nft output on
// samples of what busybox and nft print.
func TestOverlayParsers(t *testing.T) {
	lookup := "Server:\t\t127.0.0.11\nAddress:\t127.0.0.11:53\n\nName:\ttasks.api\nAddress: 10.10.0.6\nName:\ttasks.api\nAddress: 10.10.0.4\n\n*** Can't find tasks.api: No answer\n"
	if got, want := NslookupAddrs(lookup), []netip.Addr{netip.MustParseAddr("10.10.0.4"), netip.MustParseAddr("10.10.0.6")}; !slices.Equal(got, want) {
		t.Errorf("NslookupAddrs: got %v, want %v", got, want)
	}
	if got := NslookupAddrs("Server:\t\t127.0.0.11\nAddress:\t127.0.0.11:53\n\n** server can't find x: NXDOMAIN\n"); len(got) != 0 {
		t.Errorf("NslookupAddrs of NXDOMAIN: got %v, want none", got)
	}
	table := "table ip shoal_lb {\n\tmap vip_10_10_0_2 {\n\t\ttype 0 : ipv4_addr\n\t\telements = { 0 : 10.10.0.4, 1 : 10.10.0.5,\n\t\t\t     2 : 10.10.0.6 }\n\t}\n\n\tchain output {\n\t\ttype nat hook output priority -100; policy accept;\n" +
		"\t\tip daddr 10.10.0.2 dnat to numgen inc mod 3 map @vip_10_10_0_2\n\t\tip daddr 10.10.0.3 dnat to 10.10.0.7\n\t}\n}\n"
	for _, tc := range []struct {
		vip   string
		want  []string
		found bool
	}{
		{"10.10.0.2", []string{"10.10.0.4", "10.10.0.5", "10.10.0.6"}, true},
		{"10.10.0.3", []string{"10.10.0.7"}, true},
		{"10.10.0.9", nil, false},
	} {
		var want []netip.Addr
		for _, a := range tc.want {
			want = append(want, netip.MustParseAddr(a))
		}
		got, found := LBBackends(table, netip.MustParseAddr(tc.vip))
		if !slices.Equal(got, want) || found != tc.found {
			t.Errorf("LBBackends(%s): got %v %v, want %v %v", tc.vip, got, found, want, tc.found)
		}
	}
}
