package allocator

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/shoal-dev/shoal/api"
)

// Fixtures: networks "a" (10.0.1.0/24), "b" (10.0.2.0/24), "tiny"
// (10.0.3.0/29: .2 to .6 are free for tasks) and "ing" (ingress, 10.255.0.0/16).
func fixtureNetworks() []*api.Network {
	ing := net("ing", "ingress", "10.255.0.0/16", IngressVNI)
	ing.Spec.Ingress = true
	return []*api.Network{
		net("a", "a", "10.0.1.0/24", 4097),
		net("b", "b", "10.0.2.0/24", 4098),
		net("tiny", "tiny", "10.0.3.0/29", 4099),
		ing,
	}
}

type svcOpt func(*api.Service)

func dnsrr(s *api.Service) { s.Spec.Endpoint.Mode = api.EndpointDNSRR }
func publish(s *api.Service) {
	s.Spec.Endpoint.Ports = []api.PortConfig{{Published: 8080, Target: 80, Protocol: api.ProtocolTCP}}
}
func vips(spec string) svcOpt {
	return func(s *api.Service) {
		for _, a := range split(spec) {
			s.Endpoint.VIPs = append(s.Endpoint.VIPs, api.VIP{NetworkID: a[0], Addr: a[1]})
		}
	}
}

func svc(id string, networks []string, opts ...svcOpt) *api.Service {
	s := &api.Service{ID: id, Meta: api.Meta{Version: 7}, Spec: api.ServiceSpec{Name: id, Networks: networks}}
	for _, o := range opts {
		o(s)
	}
	return s
}

// task makes a task of service s in state (desired running) with
// attachments given as "net=cidr,net=cidr".
func task(id, s string, state api.TaskState, atts string) *api.Task {
	t := &api.Task{ID: id, ServiceID: s, DesiredState: api.TaskRunning, Status: api.TaskStatus{State: state}}
	for _, a := range split(atts) {
		t.Networks = append(t.Networks, api.NetworkAttachment{NetworkID: a[0], Addr: a[1], MAC: macOf(a[1])})
	}
	return t
}

func desired(d api.TaskState, t *api.Task) *api.Task {
	t.DesiredState = d
	return t
}

func split(spec string) [][2]string {
	var out [][2]string
	for _, kv := range strings.Split(spec, ",") {
		if k, v, ok := strings.Cut(kv, "="); ok {
			out = append(out, [2]string{k, v})
		}
	}
	return out
}

// summary renders a plan as id -> "net=cidr,..." and id -> error.
func summary(t *testing.T, p Plan) (map[string]string, map[string]string) {
	t.Helper()
	got := map[string]string{}
	for _, s := range p.Services {
		var parts []string
		for _, v := range s.Endpoint.VIPs {
			parts = append(parts, v.NetworkID+"="+v.Addr)
		}
		got[s.ID] = strings.Join(parts, ",")
	}
	for _, tk := range p.Tasks {
		var parts []string
		for _, a := range tk.Networks {
			parts = append(parts, a.NetworkID+"="+a.Addr)
			if want := macOf(a.Addr); a.MAC != want {
				t.Errorf("task %s: got MAC %s for %s, want %s", tk.ID, a.MAC, a.Addr, want)
			}
		}
		got[tk.ID] = strings.Join(parts, ",")
	}
	failed := map[string]string{}
	for _, f := range p.Failures {
		id := f.TaskID
		if id == "" {
			id = f.ServiceID
		}
		failed[id] = f.Err.Error()
	}
	return got, failed
}

func macOf(cidr string) string {
	ip, _, _ := strings.Cut(cidr, "/")
	var b [4]int
	fmt.Sscanf(ip, "%d.%d.%d.%d", &b[0], &b[1], &b[2], &b[3])
	return fmt.Sprintf("02:42:%02x:%02x:%02x:%02x", b[0], b[1], b[2], b[3])
}

func TestAllocate(t *testing.T) {
	tests := []struct {
		name     string
		services []*api.Service
		tasks    []*api.Task
		want     map[string]string // written objects only
		failed   map[string]string // id -> error substring
	}{
		{
			name:     "VIP first, then tasks in ID order, after the gateway",
			services: []*api.Service{svc("s", []string{"a"})},
			tasks:    []*api.Task{task("t2", "s", api.TaskPending, ""), task("t1", "s", api.TaskPending, "")},
			want:     map[string]string{"s": "a=10.0.1.2/24", "t1": "a=10.0.1.3/24", "t2": "a=10.0.1.4/24"},
		},
		{
			name:     "dnsrr has no VIP",
			services: []*api.Service{svc("s", []string{"a"}, dnsrr)},
			tasks:    []*api.Task{task("t1", "s", api.TaskPending, "")},
			want:     map[string]string{"t1": "a=10.0.1.2/24"},
		},
		{
			name:     "two networks, in the service's order",
			services: []*api.Service{svc("s", []string{"b", "a"}, dnsrr)},
			tasks:    []*api.Task{task("t1", "s", api.TaskPending, "")},
			want:     map[string]string{"t1": "b=10.0.2.2/24,a=10.0.1.2/24"},
		},
		{
			name:     "service without networks needs nothing",
			services: []*api.Service{svc("s", nil)},
			tasks:    []*api.Task{task("t1", "s", api.TaskPending, "")},
			want:     map[string]string{},
		},
		{
			name:     "kept allocations stay, new ones skip addresses of live tasks",
			services: []*api.Service{svc("s", []string{"a"}, vips("a=10.0.1.2/24"))},
			tasks: []*api.Task{
				task("run", "s", api.TaskRunning, "a=10.0.1.3/24"),
				desired(api.TaskShutdown, task("stopping", "s", api.TaskRunning, "a=10.0.1.4/24")),
				task("done", "s", api.TaskPending, "a=10.0.1.6/24"),
				task("new", "s", api.TaskPending, ""),
			},
			want: map[string]string{"new": "a=10.0.1.5/24"},
		},
		{
			name:     "addresses of finished tasks are free again",
			services: []*api.Service{svc("s", []string{"a"}, vips("a=10.0.1.2/24"))},
			tasks: []*api.Task{
				desired(api.TaskShutdown, task("failed", "s", api.TaskFailed, "a=10.0.1.3/24")),
				desired(api.TaskShutdown, task("complete", "s", api.TaskComplete, "a=10.0.1.4/24")),
				desired(api.TaskShutdown, task("unscheduled", "s", api.TaskPending, "a=10.0.1.5/24")),
				task("new", "s", api.TaskPending, ""),
				task("new2", "s", api.TaskPending, ""),
			},
			want: map[string]string{"new": "a=10.0.1.3/24", "new2": "a=10.0.1.4/24"},
		},
		{
			name: "a removed service's VIP is free again",
			services: []*api.Service{
				svc("s", []string{"a"}, dnsrr, vips("a=10.0.1.2/24")), // was vip mode
				svc("u", []string{"a"}),
			},
			tasks: []*api.Task{task("t", "u", api.TaskPending, "")},
			want:  map[string]string{"s": "", "u": "a=10.0.1.2/24", "t": "a=10.0.1.3/24"},
		},
		{
			name:     "a network dropped from the service is dropped from its VIPs and pending tasks",
			services: []*api.Service{svc("s", []string{"b"}, vips("a=10.0.1.2/24,b=10.0.2.2/24"))},
			tasks: []*api.Task{
				task("pend", "s", api.TaskPending, "a=10.0.1.3/24,b=10.0.2.3/24"),
				task("run", "s", api.TaskRunning, "a=10.0.1.4/24,b=10.0.2.4/24"),
			},
			want: map[string]string{"s": "b=10.0.2.2/24", "pend": "b=10.0.2.3/24"},
		},
		{
			name:     "invalid or foreign addresses are replaced",
			services: []*api.Service{svc("s", []string{"a"}, dnsrr)},
			tasks: []*api.Task{
				task("gw", "s", api.TaskPending, "a=10.0.1.1/24"),
				task("out", "s", api.TaskPending, "a=10.0.9.9/24"),
				task("mask", "s", api.TaskPending, "a=10.0.1.9/16"),
				task("gone", "s", api.TaskPending, "zzz=10.0.1.7/24"),
			},
			want: map[string]string{"gw": "a=10.0.1.3/24", "out": "a=10.0.1.5/24", "mask": "a=10.0.1.4/24", "gone": "a=10.0.1.2/24"},
		},
		{
			name:     "a duplicate address keeps the live task's and gives the pending one another",
			services: []*api.Service{svc("s", []string{"a"}, dnsrr)},
			tasks: []*api.Task{
				task("p", "s", api.TaskPending, "a=10.0.1.2/24"),
				task("r", "s", api.TaskRunning, "a=10.0.1.2/24"),
			},
			want: map[string]string{"p": "a=10.0.1.3/24"},
		},
		{
			name:     "published ports put the service on ingress, first",
			services: []*api.Service{svc("web", []string{"a"}, publish)},
			tasks:    []*api.Task{task("t1", "web", api.TaskPending, "")},
			want:     map[string]string{"web": "ing=10.255.0.2/16,a=10.0.1.2/24", "t1": "ing=10.255.0.3/16,a=10.0.1.3/24"},
		},
		{
			name:     "naming ingress among the networks does not attach twice",
			services: []*api.Service{svc("web", []string{"ing"}, publish, dnsrr)},
			tasks:    []*api.Task{task("t1", "web", api.TaskPending, "")},
			want:     map[string]string{"t1": "ing=10.255.0.2/16"},
		},
		{
			name:     "subnet exhausted: VIP and four tasks fit in a /29, the fifth waits",
			services: []*api.Service{svc("s", []string{"tiny"})},
			tasks: []*api.Task{
				task("t1", "s", api.TaskPending, ""), task("t2", "s", api.TaskPending, ""), task("t3", "s", api.TaskPending, ""),
				task("t4", "s", api.TaskPending, ""), task("t5", "s", api.TaskPending, ""),
			},
			want: map[string]string{"s": "tiny=10.0.3.2/29", "t1": "tiny=10.0.3.3/29", "t2": "tiny=10.0.3.4/29",
				"t3": "tiny=10.0.3.5/29", "t4": "tiny=10.0.3.6/29"},
			failed: map[string]string{"t5": "network tiny (10.0.3.0/29): allocator: no free address"},
		},
		{
			name: "all or nothing: a task that cannot get every network takes none",
			services: []*api.Service{
				svc("full", []string{"tiny"}, dnsrr),
				svc("two", []string{"a", "tiny"}, dnsrr),
				svc("one", []string{"a"}, dnsrr),
			},
			tasks: []*api.Task{
				task("f1", "full", api.TaskRunning, "tiny=10.0.3.2/29"), task("f2", "full", api.TaskRunning, "tiny=10.0.3.3/29"),
				task("f3", "full", api.TaskRunning, "tiny=10.0.3.4/29"), task("f4", "full", api.TaskRunning, "tiny=10.0.3.5/29"),
				task("f5", "full", api.TaskRunning, "tiny=10.0.3.6/29"),
				task("t1", "two", api.TaskPending, ""),
				task("t2", "one", api.TaskPending, ""),
			},
			want:   map[string]string{"t2": "a=10.0.1.2/24"},
			failed: map[string]string{"t1": "no free address"},
		},
		{
			name:     "a service naming a missing network waits",
			services: []*api.Service{svc("s", []string{"nope"})},
			tasks:    []*api.Task{task("t1", "s", api.TaskPending, "")},
			want:     map[string]string{},
			failed:   map[string]string{"s": "network nope: not found", "t1": "network nope: not found"},
		},
		{
			name:     "scheduled tasks are never changed",
			services: []*api.Service{svc("s", []string{"a"}, dnsrr)},
			tasks: []*api.Task{
				task("assigned", "s", api.TaskAssigned, ""),
				task("running", "s", api.TaskRunning, "b=10.0.2.2/24"),
			},
			want: map[string]string{},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			plan := Allocate(fixtureNetworks(), tt.services, tt.tasks, nil)
			got, failed := summary(t, plan)
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got writes %v, want %v", got, tt.want)
			}
			if len(failed) != len(tt.failed) {
				t.Errorf("got failures %v, want %v", failed, tt.failed)
			}
			for id, sub := range tt.failed {
				if !strings.Contains(failed[id], sub) {
					t.Errorf("%s: got failure %q, want one holding %q", id, failed[id], sub)
				}
			}
		})
	}
}

func TestAllocateFailureErrors(t *testing.T) {
	services := []*api.Service{svc("s", []string{"tiny"}, dnsrr)}
	var tasks []*api.Task
	for i := range 6 {
		tasks = append(tasks, task(fmt.Sprintf("t%d", i), "s", api.TaskPending, ""))
	}
	plan := Allocate(fixtureNetworks(), services, tasks, nil)
	if len(plan.Failures) != 1 || !errors.Is(plan.Failures[0].Err, ErrNoAddress) {
		t.Fatalf("got failures %+v, want one wrapping %v", plan.Failures, ErrNoAddress)
	}
}

func TestAllocateNoIngress(t *testing.T) {
	networks := fixtureNetworks()[:3]
	services := []*api.Service{svc("web", []string{"a"}, publish)}
	tasks := []*api.Task{task("t1", "web", api.TaskPending, "")}
	got, failed := summary(t, Allocate(networks, services, tasks, nil))
	if want := map[string]string{"web": "a=10.0.1.2/24"}; !reflect.DeepEqual(got, want) {
		t.Errorf("got writes %v, want %v", got, want)
	}
	if !strings.Contains(failed["t1"], "no ingress network") {
		t.Errorf("got failures %v, want t1 waiting for an ingress network", failed)
	}
	if NewIndex(networks, services).Ready(tasks[0]) {
		t.Error("task of a publishing service is ready without an ingress network")
	}
}

// apply writes a plan into the state, as the loop would.
func apply(services []*api.Service, tasks []*api.Task, p Plan) ([]*api.Service, []*api.Task) {
	svcs := slices.Clone(services)
	for i, s := range svcs {
		for _, n := range p.Services {
			if n.ID == s.ID {
				svcs[i] = n
			}
		}
	}
	tks := slices.Clone(tasks)
	for i, tk := range tks {
		for _, n := range p.Tasks {
			if n.ID == tk.ID {
				tks[i] = n
			}
		}
	}
	return svcs, tks
}

func TestAllocateIsStableAndDeterministic(t *testing.T) {
	networks := fixtureNetworks()
	services := []*api.Service{svc("web", []string{"a", "b"}, publish), svc("db", []string{"b"}), svc("dns", []string{"a"}, dnsrr)}
	var tasks []*api.Task
	for i := range 20 {
		s := []string{"web", "db", "dns"}[i%3]
		tasks = append(tasks, task(fmt.Sprintf("t%02d", i), s, api.TaskPending, ""))
	}
	tasks = append(tasks, task("old", "db", api.TaskRunning, "b=10.0.2.9/24"))
	first := Allocate(networks, services, tasks, nil)
	wantWrites, _ := summary(t, first)

	rng := rand.New(rand.NewPCG(1, 2))
	for range 20 {
		n, s, tk := slices.Clone(networks), slices.Clone(services), slices.Clone(tasks)
		rng.Shuffle(len(n), func(i, j int) { n[i], n[j] = n[j], n[i] })
		rng.Shuffle(len(s), func(i, j int) { s[i], s[j] = s[j], s[i] })
		rng.Shuffle(len(tk), func(i, j int) { tk[i], tk[j] = tk[j], tk[i] })
		got, _ := summary(t, Allocate(n, s, tk, nil))
		if !reflect.DeepEqual(got, wantWrites) {
			t.Fatalf("shuffled input: got %v, want %v", got, wantWrites)
		}
	}

	// Applied, the plan leaves nothing to do; every address is unique.
	svcs, tks := apply(services, tasks, first)
	if again := Allocate(networks, svcs, tks, nil); !again.Empty() || len(again.Failures) != 0 {
		t.Fatalf("second pass: got %+v, want nothing to do", again)
	}
	seen := map[string]string{}
	idx := NewIndex(networks, svcs)
	for _, s := range svcs {
		for _, v := range s.Endpoint.VIPs {
			if other, dup := seen[v.Addr]; dup {
				t.Errorf("VIP %s of %s also held by %s", v.Addr, s.ID, other)
			}
			seen[v.Addr] = s.ID
		}
	}
	for _, tk := range tks {
		if !idx.Ready(tk) {
			t.Errorf("task %s: not ready after allocation: %+v", tk.ID, tk.Networks)
		}
		for _, a := range tk.Networks {
			if other, dup := seen[a.Addr]; dup {
				t.Errorf("address %s of %s also held by %s", a.Addr, tk.ID, other)
			}
			seen[a.Addr] = tk.ID
		}
	}

	// Inputs are not changed.
	if tasks[0].Networks != nil || services[0].Endpoint.VIPs != nil {
		t.Error("Allocate changed its arguments")
	}
}

func TestReuseAfterFree(t *testing.T) {
	networks := fixtureNetworks()
	services := []*api.Service{svc("s", []string{"tiny"}, dnsrr)}
	var tasks []*api.Task
	for i := range 5 {
		tasks = append(tasks, task(fmt.Sprintf("t%d", i), "s", api.TaskRunning, fmt.Sprintf("tiny=10.0.3.%d/29", i+2)))
	}
	tasks = append(tasks, task("wait", "s", api.TaskPending, ""))
	if p := Allocate(networks, services, tasks, nil); len(p.Failures) != 1 {
		t.Fatalf("full subnet: got %+v, want the pending task to wait", p)
	}
	// t2 (10.0.3.4) fails: its address goes to the waiting task.
	tasks[2].Status.State = api.TaskFailed
	got, failed := summary(t, Allocate(networks, services, tasks, nil))
	if want := map[string]string{"wait": "tiny=10.0.3.4/29"}; !reflect.DeepEqual(got, want) || len(failed) != 0 {
		t.Fatalf("got %v, %v, want %v", got, failed, want)
	}
	// Deleted tasks free theirs too.
	got, _ = summary(t, Allocate(networks, services, append(slices.Clone(tasks[1:2]), tasks[5]), nil))
	if want := map[string]string{"wait": "tiny=10.0.3.2/29"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("got %v, want %v", got, want)
	}
}

func TestReady(t *testing.T) {
	networks := fixtureNetworks()
	services := []*api.Service{svc("web", []string{"a"}, publish), svc("plain", nil)}
	idx := NewIndex(networks, services)
	tests := []struct {
		name string
		task *api.Task
		want bool
	}{
		{"no networks needed", task("t", "plain", api.TaskPending, ""), true},
		{"service gone", task("t", "gone", api.TaskPending, ""), true},
		{"nothing yet", task("t", "web", api.TaskPending, ""), false},
		{"missing one", task("t", "web", api.TaskPending, "ing=10.255.0.3/16"), false},
		{"all", task("t", "web", api.TaskPending, "ing=10.255.0.3/16,a=10.0.1.3/24"), true},
		{"wrong order", task("t", "web", api.TaskPending, "a=10.0.1.3/24,ing=10.255.0.3/16"), false},
		{"one too many", task("t", "web", api.TaskPending, "ing=10.255.0.3/16,a=10.0.1.3/24,b=10.0.2.3/24"), false},
		{"extra on a plain service", task("t", "plain", api.TaskPending, "b=10.0.2.3/24"), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := idx.Ready(tt.task); got != tt.want {
				t.Errorf("got %v, want %v", got, tt.want)
			}
		})
	}
	if got := idx.IngressID(); got != "ing" {
		t.Errorf("got ingress %q, want ing", got)
	}
}

func node(id string, state api.NodeState, ingress string) *api.Node {
	return &api.Node{ID: id, Status: api.NodeStatus{State: state}, IngressAddr: ingress}
}

func TestAllocateNodeIngress(t *testing.T) {
	tests := []struct {
		name     string
		networks []*api.Network
		tasks    []*api.Task
		nodes    []*api.Node
		want     map[string]string // node ID -> IngressAddr written
	}{
		{
			name:  "ready nodes get the lowest free addresses after tasks' and VIPs' (s gets .3)",
			tasks: []*api.Task{task("t1", "s", api.TaskRunning, "ing=10.255.0.2/16")},
			nodes: []*api.Node{node("n2", api.NodeStateReady, ""), node("n1", api.NodeStateReady, "")},
			want:  map[string]string{"n1": "10.255.0.4/16", "n2": "10.255.0.5/16"},
		},
		{
			name:  "a node keeps its address, even down; a node not ready yet gets none",
			nodes: []*api.Node{node("n1", api.NodeStateDown, "10.255.0.9/16"), node("n2", api.NodeStateUnknown, "")},
			want:  map[string]string{},
		},
		{
			name:  "a node's address is not given to a pending task",
			tasks: []*api.Task{task("t1", "p", api.TaskPending, "")},
			nodes: []*api.Node{node("n1", api.NodeStateReady, "10.255.0.2/16")},
			want:  map[string]string{},
		},
		{
			name:  "an address held by a task or another node, or outside the subnet, is replaced",
			tasks: []*api.Task{task("t1", "s", api.TaskRunning, "ing=10.255.0.2/16")},
			nodes: []*api.Node{node("n1", api.NodeStateReady, "10.255.0.2/16"), node("n2", api.NodeStateReady, "10.255.0.2/16"), node("n3", api.NodeStateReady, "10.0.1.5/24")},
			want:  map[string]string{"n1": "10.255.0.4/16", "n2": "10.255.0.5/16", "n3": "10.255.0.6/16"},
		},
		{
			name:     "without an ingress network nodes hold none",
			networks: fixtureNetworks()[:3],
			nodes:    []*api.Node{node("n1", api.NodeStateReady, "10.255.0.2/16"), node("n2", api.NodeStateReady, "")},
			want:     map[string]string{"n1": ""},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			networks := tt.networks
			if networks == nil {
				networks = fixtureNetworks()
			}
			services := []*api.Service{svc("s", nil, publish), svc("p", nil, publish, vips("ing=10.255.0.7/16"))}
			plan := Allocate(networks, services, tt.tasks, tt.nodes)
			got := map[string]string{}
			for _, n := range plan.Nodes {
				got[n.ID] = n.IngressAddr
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("nodes: got %v, want %v", got, tt.want)
			}
			for _, tk := range plan.Tasks {
				for _, n := range tt.nodes {
					if len(tk.Networks) > 0 && tk.Networks[0].Addr == n.IngressAddr {
						t.Errorf("task %s got node %s's address %s", tk.ID, n.ID, n.IngressAddr)
					}
				}
			}
			again := Allocate(networks, services, tt.tasks, applyNodes(tt.nodes, plan.Nodes))
			if len(again.Nodes) != 0 {
				t.Errorf("second pass: got %d node changes, want none", len(again.Nodes))
			}
		})
	}
}

// applyNodes returns nodes with the planned copies in place of their originals.
func applyNodes(nodes, planned []*api.Node) []*api.Node {
	out := slices.Clone(nodes)
	for i, n := range out {
		for _, p := range planned {
			if p.ID == n.ID {
				out[i] = p
			}
		}
	}
	return out
}
