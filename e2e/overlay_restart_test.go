package e2e

import (
	"encoding/json"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/shoal-dev/shoal/api"
)

// hostLinks maps the names of h's links starting with "sh" to their
// interface index, from `ip -o link`, and tells which are veth ends (name@ifN).
func hostLinks(h *Host) (links map[string]int, veths map[string]bool, err error) {
	out, err := ipCmd("-n", h.NS, "-o", "link")
	if err != nil {
		return nil, nil, fmt.Errorf("%s: ip -o link: %w: %s", h.Name, err, out)
	}
	links, veths = map[string]int{}, map[string]bool{}
	for _, line := range strings.Split(out, "\n") {
		// "9: she0a1b2c3d4e5@if2: <BROADCAST,..."
		fields := strings.Fields(line)
		if len(fields) < 2 {
			continue
		}
		idx, err := strconv.Atoi(strings.TrimSuffix(fields[0], ":"))
		if err != nil {
			continue
		}
		name, peer, isVeth := strings.Cut(strings.TrimSuffix(fields[1], ":"), "@")
		if strings.HasPrefix(name, "sh") {
			links[name] = idx
			veths[name] = isVeth && strings.HasPrefix(peer, "if")
		}
	}
	return links, veths, nil
}

// taskVeths are the names of the host ends of task taskID's veths on h
// (eth0, gw0, ...): the host links whose indexes the task's links name
// as their peers (eth0@ifN), sorted.
func (c *EngineCluster) taskVeths(h *Host, taskID string) ([]string, error) {
	out, err := c.InTaskNetns(h, taskID, 10*time.Second, "ip", "-o", "link")
	if err != nil {
		return nil, err
	}
	links, _, err := hostLinks(h)
	if err != nil {
		return nil, err
	}
	byIndex := map[int]string{}
	for name, i := range links {
		byIndex[i] = name
	}
	var veths []string
	for _, line := range strings.Split(out, "\n") {
		fields := strings.Fields(line)
		if len(fields) < 2 {
			continue
		}
		_, peer, ok := strings.Cut(strings.TrimSuffix(fields[1], ":"), "@if")
		if !ok {
			continue
		}
		idx, err := strconv.Atoi(peer)
		if err != nil {
			return nil, fmt.Errorf("task %s: link %q: bad peer index", shortID(taskID), fields[1])
		}
		name, ok := byIndex[idx]
		if !ok {
			return nil, fmt.Errorf("task %s: link %s: no sh* link with index %d on %s: %v", shortID(taskID), fields[1], idx, h.Name, links)
		}
		veths = append(veths, name)
	}
	if len(veths) == 0 {
		return nil, fmt.Errorf("task %s: no veth in its netns: %s", shortID(taskID), out)
	}
	slices.Sort(veths)
	return veths, nil
}

// taskNetnsOf is the entry of names that is task taskID's namespace.
func taskNetnsOf(names []string, taskID string) (string, bool) {
	for _, n := range names {
		if strings.HasSuffix(n, "-"+shortID(taskID)) {
			return n, true
		}
	}
	return "", false
}

// restartSnapshot is what a worker's data plane looks like at one moment.
type restartSnapshot struct {
	links  map[string]int // sh* link name -> index
	veths  map[string]bool
	netns  []string
	nft    int
	taskID []string // live tasks of the node, sorted
}

func (s restartSnapshot) linkNames() []string { return slices.Sorted(maps.Keys(s.links)) }

// TestOverlayAgentRestart restarts a worker's agent (kill -9, then SIGTERM,
// each followed by `shoal agent` again) under tasks on an overlay network
// and checks that the data plane is reconciled, not rebuilt or leaked: the
// same tasks run, the same links (same interface indexes) and task
// namespaces exist and nothing else, DNS and the VIP still answer from a
// task on the worker and one on the manager, and a later scale-down removes
// the gone task's veths and namespace.
func TestOverlayAgentRestart(t *testing.T) {
	requireEngine(t)
	requireOverlay(t)
	shoalBin(t)
	start := time.Now()
	c := newOverlayCluster(t, 1, 1)
	report(t, "overlay restart: cluster of 1 manager and 1 worker with containerd ready: %.2fs", time.Since(start).Seconds())
	m, w1 := c.Managers[0], c.Workers[0]
	s := &services{c: c, m: m}

	netID := strings.TrimSpace(s.run(t, "network", "create", "rnet"))
	s.run(t, "service", "create", "--name", "api", "--network", "rnet", "--replicas", "3",
		"--constraint", "node.hostname=="+w1.Name, "--stop-grace-period", "1s", "--detach", c.Image, "sh", "-c", apiScript)
	// A client on the restarted worker (its resolver and LB rules are that
	// agent's) and one on the manager (reaching the worker's tasks over VXLAN).
	clientHosts := []*Host{w1, m}
	for _, h := range clientHosts {
		s.run(t, "service", "create", "--name", "cli"+h.Name, "--network", "rnet", "--replicas", "1",
			"--constraint", "node.hostname=="+h.Name, "--stop-grace-period", "1s", "--detach", c.Image, "sleep", "100000")
	}
	apiTasks, _ := s.wait(t, "api", replicas(3))
	var views []api.ServiceView
	if out := s.run(t, "service", "inspect", "api"); json.Unmarshal([]byte(out), &views) != nil || len(views) != 1 {
		t.Fatalf("service inspect api: %s", out)
	}
	var vip netip.Addr
	for _, v := range views[0].Endpoint.VIPs {
		if p, err := netip.ParsePrefix(v.Addr); err == nil && v.NetworkID == netID {
			vip = p.Addr()
		}
	}
	if !vip.IsValid() {
		t.Fatalf("service inspect api: no VIP on network %s: %+v", netID, views[0].Endpoint)
	}
	var clients []*overlayRun
	for _, h := range clientHosts {
		tasks, _ := s.wait(t, "cli"+h.Name, replicas(1))
		clients = append(clients, &overlayRun{services: s, netID: netID, vip: vip, cli: Live(tasks)[0]})
	}

	// connected checks, from every client, DNS for the service and its
	// tasks and a request to the VIP answered by one of want.
	connected := func(want []*api.Task) error {
		wantAddrs := clients[0].netAddrs(t, want)
		for i, o := range clients {
			// The client task itself may have been replaced.
			svc := "cli" + clientHosts[i].Name
			tasks, err := Tasks(m, svc)
			if err != nil {
				return err
			}
			if live := Live(tasks); len(live) != 1 {
				return fmt.Errorf("service %s: %d live tasks, want 1: %s", svc, len(live), c.TaskSummary(tasks))
			}
			o.cli = Live(tasks)[0]
			from := c.HostByID(o.cli.NodeID).Name
			got, out, err := o.lookup("api")
			if err != nil {
				return fmt.Errorf("from %s: nslookup api: %w", from, err)
			}
			if !slices.Equal(got, []netip.Addr{vip}) {
				return fmt.Errorf("from %s: nslookup api: got %v, want the VIP %s:\n%s", from, got, vip, out)
			}
			got, out, err = o.lookup("tasks.api")
			if err != nil {
				return fmt.Errorf("from %s: nslookup tasks.api: %w", from, err)
			}
			if !slices.Equal(got, wantAddrs) {
				return fmt.Errorf("from %s: nslookup tasks.api: got %v, want %v:\n%s", from, got, wantAddrs, out)
			}
			out, err = o.cliExec(httpGet(vip.String()))
			if err != nil {
				return fmt.Errorf("from %s: GET http://%s/: %w", from, vip, err)
			}
			if tk, name := whoAnswered(out, want); tk == nil {
				return fmt.Errorf("from %s: GET http://%s/: answer %q (%q) names no api task", from, vip, name, out)
			}
		}
		return nil
	}
	began := time.Now()
	eventually(t, 30*time.Second, func() error { return connected(Live(apiTasks)) })
	report(t, "overlay restart: DNS and VIP answer from %s and %s %.2fs after the services ran", w1.Name, m.Name, time.Since(began).Seconds())

	snapshot := func() (restartSnapshot, error) {
		var snap restartSnapshot
		var err error
		if snap.links, snap.veths, err = hostLinks(w1); err != nil {
			return snap, err
		}
		f, err := w1.Footprint()
		if err != nil {
			return snap, err
		}
		snap.nft = f.NFTLines
		snap.netns = ShoalNetns(w1.NetnsDir())
		tasks, err := NodeTasks(m, w1.Name)
		if err != nil {
			return snap, err
		}
		snap.taskID = ids(Live(tasks))
		slices.Sort(snap.taskID)
		return snap, nil
	}
	// consistent checks that snap is the data plane of its live tasks
	// alone: node-wide devices (the network's bridge and VXLAN device, the
	// gateway bridge), the veths of each task's netns and one netns per
	// task, nothing else. It returns the task veths.
	consistent := func(snap restartSnapshot) (map[string][]string, error) {
		vethOf := map[string][]string{}
		var want []string
		kinds := map[string]int{}
		for name := range snap.links {
			if !snap.veths[name] {
				want = append(want, name)
				kinds[name[:3]]++
			}
		}
		if kinds["shb"] != 1 || kinds["shv"] != 1 {
			return nil, fmt.Errorf("%s: node-wide links %v, want one bridge (shb) and one VXLAN device (shv)", w1.Name, want)
		}
		var wantNetns []string
		for _, id := range snap.taskID {
			v, err := c.taskVeths(w1, id)
			if err != nil {
				return nil, err
			}
			vethOf[id] = v
			want = append(want, v...)
			ns, ok := taskNetnsOf(snap.netns, id)
			if !ok {
				return nil, fmt.Errorf("%s: no netns of task %s in %v", w1.Name, shortID(id), snap.netns)
			}
			wantNetns = append(wantNetns, ns)
		}
		slices.Sort(want)
		slices.Sort(wantNetns)
		if got := snap.linkNames(); !slices.Equal(got, want) {
			return nil, fmt.Errorf("%s: links %v, want %v (node-wide devices and the veths of tasks %v)", w1.Name, got, want, short(snap.taskID))
		}
		if !slices.Equal(snap.netns, wantNetns) {
			return nil, fmt.Errorf("%s: task netns %v, want %v", w1.Name, snap.netns, wantNetns)
		}
		return vethOf, nil
	}
	var snap restartSnapshot
	var vethOf map[string][]string
	eventually(t, 30*time.Second, func() error {
		var err error
		if snap, err = snapshot(); err != nil {
			return err
		}
		if len(snap.taskID) != 4 {
			return fmt.Errorf("%s: %d live tasks %v, want 4 (3 api, 1 cli)", w1.Name, len(snap.taskID), short(snap.taskID))
		}
		vethOf, err = consistent(snap)
		return err
	})

	for _, tc := range []struct {
		name string
		stop func(p *Proc) error
	}{
		// kill -9 leaves the node's gossip membership to time out, so a
		// quick restart keeps its tasks: the agent must adopt their links.
		{"SIGKILL", func(p *Proc) error { p.Kill(); return nil }},
		// SIGTERM leaves the cluster gracefully.
		{"SIGTERM", func(p *Proc) error { return p.Stop() }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			defer c.Net.Bind(t)()
			before := snap
			t.Logf("%s before the restart: tasks %v, links %v, %d nft ruleset lines, task netns %v, task veths %v",
				w1.Name, short(before.taskID), before.links, before.nft, before.netns, vethOf)
			stopped := time.Now()
			if err := tc.stop(w1.Daemon()); err != nil {
				t.Errorf("%s of %s's shoal: %v", tc.name, w1.Name, err)
			}
			stopTook := time.Since(stopped)
			if s, err := snapshot(); err == nil {
				t.Logf("%s with its agent stopped: links %v, netns %v", w1.Name, s.linkNames(), s.netns)
			}
			restarted := time.Now()
			c.Agent(w1)
			c.WaitServing(t, w1)
			s.ready(t)
			serving := time.Since(restarted)

			var after restartSnapshot
			var afterVeths map[string][]string
			var apiNow []*api.Task
			d := eventually(t, 60*time.Second, func() error {
				tasks, err := Tasks(m, "api")
				if err != nil {
					return err
				}
				if apiNow = Live(tasks); len(apiNow) != 3 {
					return fmt.Errorf("api: %d live tasks, want 3: %s", len(apiNow), c.TaskSummary(tasks))
				}
				if after, err = snapshot(); err != nil {
					return err
				}
				if len(after.taskID) != 4 {
					return fmt.Errorf("%s: %d live tasks %v, want 4", w1.Name, len(after.taskID), short(after.taskID))
				}
				afterVeths, err = consistent(after)
				return err
			})
			snap, vethOf = after, afterVeths
			if !slices.Equal(after.taskID, before.taskID) {
				t.Errorf("%s: live tasks after the %s restart: got %v, want %v (unchanged: the agent was away %.2fs)",
					w1.Name, tc.name, short(after.taskID), short(before.taskID), time.Since(stopped).Seconds()-d.Seconds())
			} else {
				if !maps.Equal(after.links, before.links) {
					t.Errorf("%s: links after the restart: got %v, want %v (same interface indexes: adopted, not recreated)", w1.Name, after.links, before.links)
				}
				if !slices.Equal(after.netns, before.netns) || after.nft != before.nft {
					t.Errorf("%s: netns %v and %d nft lines after the restart, want %v and %d", w1.Name, after.netns, after.nft, before.netns, before.nft)
				}
			}
			dc := eventually(t, 30*time.Second, func() error { return connected(apiNow) })
			report(t, "overlay restart (%s): stop took %.2fs; agent serving again %.2fs later; tasks kept %v, links %v, netns %v; data plane consistent %.2fs later; DNS and VIP answer from %s and %s %.2fs after that",
				tc.name, stopTook.Seconds(), serving.Seconds(), slices.Equal(after.taskID, before.taskID), maps.Equal(after.links, before.links),
				slices.Equal(after.netns, before.netns), d.Seconds(), w1.Name, m.Name, dc.Seconds())
		})
	}

	t.Run("scale_down", func(t *testing.T) {
		defer c.Net.Bind(t)()
		before, err := snapshot()
		if err != nil {
			t.Fatal(err)
		}
		apiBefore, err := Tasks(m, "api")
		if err != nil {
			t.Fatal(err)
		}
		s.run(t, "service", "scale", "api=2")
		scaled := time.Now()
		apiAfter, _ := s.wait(t, "api", replicas(2))
		var gone *api.Task
		for _, tk := range Live(apiBefore) {
			if !slices.ContainsFunc(Live(apiAfter), func(a *api.Task) bool { return a.ID == tk.ID }) {
				gone = tk
			}
		}
		if gone == nil {
			t.Fatalf("after scale api=2: no api task of %s stopped: %s", c.TaskSummary(apiBefore), c.TaskSummary(apiAfter))
		}
		goneVeth := vethOf[gone.ID]
		goneNetns, ok := taskNetnsOf(before.netns, gone.ID)
		if !ok || len(goneVeth) == 0 {
			t.Fatalf("task %s: veth %q, netns in %v: not known before the scale", gone.ID, goneVeth, before.netns)
		}
		wantLinks := slices.DeleteFunc(before.linkNames(), func(n string) bool { return slices.Contains(goneVeth, n) })
		wantNetns := slices.DeleteFunc(slices.Clone(before.netns), func(n string) bool { return n == goneNetns })
		eventually(t, 60*time.Second, func() error {
			snap, err := snapshot()
			if err != nil {
				return err
			}
			if !slices.Equal(snap.linkNames(), wantLinks) {
				return fmt.Errorf("links on %s: got %v, want %v (without %s, task %s's veth)", w1.Name, snap.linkNames(), wantLinks, goneVeth, shortID(gone.ID))
			}
			if !slices.Equal(snap.netns, wantNetns) {
				return fmt.Errorf("task netns on %s: got %v, want %v (without %s)", w1.Name, snap.netns, wantNetns, goneNetns)
			}
			return nil
		})
		cleaned := time.Since(scaled)
		dc := eventually(t, 30*time.Second, func() error { return connected(Live(apiAfter)) })
		report(t, "overlay restart: scale api=2 after the restarts: task %s's veths %v and netns %s gone %.2fs after the scale; DNS and VIP follow %.2fs later",
			shortID(gone.ID), goneVeth, goneNetns, cleaned.Seconds(), dc.Seconds())
	})
}
