package main

import (
	"context"
	"encoding/json"
	"net/http"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/shoal-dev/shoal/api"
)

// testID pads prefix to a 25-character object ID.
func testID(prefix string) string { return prefix + strings.Repeat("0", 25-len(prefix)) }

var (
	webID   = testID("w3bs3rv1c3id")
	agentID = testID("ag3nts3rv1c3")
)

func testServices() []api.ServiceView {
	web := api.ServiceView{Desired: 3, Running: 2}
	web.ID = webID
	web.Spec = api.ServiceSpec{Name: "web", Mode: api.ModeReplicated, Replicas: 3,
		Task: api.TaskSpec{Image: "nginx:1.27@sha256:0123456789abcdef"}}
	agent := api.ServiceView{Desired: 2, Running: 2}
	agent.ID = agentID
	agent.Spec = api.ServiceSpec{Name: "agent", Mode: api.ModeGlobal, Task: api.TaskSpec{Image: "busybox"}}
	return []api.ServiceView{web, agent}
}

// testTasks are in the API's order: by service name, slot or node, newest first.
func testTasks() []*api.Task {
	mk := func(id string, svc api.ServiceView, slot uint64, node string, desired, state api.TaskState, age time.Duration, errText string) *api.Task {
		return &api.Task{
			ID: testID(id), ServiceID: svc.ID, ServiceName: svc.Spec.Name, Slot: slot, NodeID: node,
			Spec: svc.Spec.Task, DesiredState: desired,
			Status: api.TaskStatus{State: state, Timestamp: testNow.Add(-age), Err: errText},
		}
	}
	svcs := testServices()
	web, agent := svcs[0], svcs[1]
	return []*api.Task{
		mk("agenttaskmgr", agent, 0, "mgr1", api.TaskRunning, api.TaskRunning, 3*time.Hour, ""),
		mk("agenttaskwk1", agent, 0, "wrk1", api.TaskRunning, api.TaskRunning, 90*time.Second, ""),
		mk("webtask1new0", web, 1, "wrk1", api.TaskRunning, api.TaskRunning, 5*time.Second, ""),
		mk("webtask1old0", web, 1, "wrk1", api.TaskShutdown, api.TaskFailed, 2*time.Minute, "task: non-zero exit (1)"),
		mk("webtask1old1", web, 1, "gone", api.TaskShutdown, api.TaskFailed, 10*time.Minute, "task: non-zero exit (137)"),
		mk("webtask2new0", web, 2, "mgr1", api.TaskRunning, api.TaskRunning, time.Hour, ""),
		mk("webtask3new0", web, 3, "", api.TaskRunning, api.TaskPending, 0,
			"no suitable node (insufficient memory on 3 nodes)"),
	}
}

// stubServices is the service side of the stub daemon, guarded by its mu.
type stubServices struct {
	services []api.ServiceView
	tasks    []*api.Task
	created  []api.ServiceSpec
	scaled   []string // "REF=N"
	logs     string
	// onServiceGet, when set, runs as GET /v1/services/{ref} is answered,
	// with the number of such requests so far; it may change services.
	onServiceGet func(n int)
	serviceGets  int
}

// setup changes the stub's state before a test runs a command.
func (d *stubDaemon) setup(fn func(s *stubServices)) {
	d.mu.Lock()
	defer d.mu.Unlock()
	fn(&d.stubServices)
}

// findService finds a service by ID, ID prefix or name; d.mu must be held.
func (s *stubServices) findService(ref string) (int, bool) {
	for i, v := range s.services {
		if v.ID == ref || v.Spec.Name == ref || (len(ref) >= 4 && strings.HasPrefix(v.ID, ref)) {
			return i, true
		}
	}
	return 0, false
}

func (d *stubDaemon) serviceRoutes(mux *http.ServeMux, answer func(http.ResponseWriter, int, any), findNode func(string) (api.NodeView, bool)) {
	notFound := func(w http.ResponseWriter, ref string) {
		answer(w, http.StatusNotFound, api.Error{Message: "no such service: " + ref})
	}
	mux.HandleFunc("POST /v1/services", func(w http.ResponseWriter, r *http.Request) {
		var spec api.ServiceSpec
		if err := json.NewDecoder(r.Body).Decode(&spec); err != nil {
			answer(w, http.StatusBadRequest, api.Error{Message: err.Error()})
			return
		}
		d.mu.Lock()
		defer d.mu.Unlock()
		if _, ok := d.findService(spec.Name); ok {
			answer(w, http.StatusConflict, api.Error{Message: "a service named " + spec.Name + " exists already"})
			return
		}
		d.created = append(d.created, spec)
		v := api.ServiceView{Desired: spec.Replicas}
		v.ID, v.Spec = testID("n3ws3rv1c3id"), spec
		d.services = append(d.services, v)
		answer(w, http.StatusOK, v)
	})
	mux.HandleFunc("GET /v1/services", func(w http.ResponseWriter, _ *http.Request) {
		d.mu.Lock()
		defer d.mu.Unlock()
		answer(w, http.StatusOK, d.services)
	})
	mux.HandleFunc("GET /v1/services/{ref}", func(w http.ResponseWriter, r *http.Request) {
		d.mu.Lock()
		defer d.mu.Unlock()
		d.serviceGets++
		if d.onServiceGet != nil {
			d.onServiceGet(d.serviceGets)
		}
		i, ok := d.findService(r.PathValue("ref"))
		if !ok {
			notFound(w, r.PathValue("ref"))
			return
		}
		answer(w, http.StatusOK, d.services[i])
	})
	mux.HandleFunc("POST /v1/services/{ref}/update", func(w http.ResponseWriter, r *http.Request) {
		var u api.ServiceUpdate
		if err := json.NewDecoder(r.Body).Decode(&u); err != nil || (u.Replicas == nil && u.Spec == nil) {
			answer(w, http.StatusBadRequest, api.Error{Message: "want replicas or a spec"})
			return
		}
		d.mu.Lock()
		defer d.mu.Unlock()
		i, ok := d.findService(r.PathValue("ref"))
		if !ok {
			notFound(w, r.PathValue("ref"))
			return
		}
		v := &d.services[i]
		if u.Spec != nil {
			prev := v.Spec
			v.Spec, v.PreviousSpec = *u.Spec, &prev
			answer(w, http.StatusOK, *v)
			return
		}
		if v.Spec.Mode == api.ModeGlobal {
			answer(w, http.StatusBadRequest, api.Error{Message: "service " + v.Spec.Name + " is global: it cannot be scaled"})
			return
		}
		v.Spec.Replicas, v.Desired = *u.Replicas, *u.Replicas
		d.scaled = append(d.scaled, r.PathValue("ref")+"="+jsonString(*u.Replicas))
		answer(w, http.StatusOK, *v)
	})
	mux.HandleFunc("DELETE /v1/services/{ref}", func(w http.ResponseWriter, r *http.Request) {
		d.mu.Lock()
		defer d.mu.Unlock()
		if _, ok := d.findService(r.PathValue("ref")); !ok {
			notFound(w, r.PathValue("ref"))
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("GET /v1/tasks", func(w http.ResponseWriter, r *http.Request) {
		d.mu.Lock()
		defer d.mu.Unlock()
		var serviceID, nodeID string
		if ref := r.URL.Query().Get("service"); ref != "" {
			i, ok := d.findService(ref)
			if !ok {
				notFound(w, ref)
				return
			}
			serviceID = d.services[i].ID
		}
		if ref := r.URL.Query().Get("node"); ref != "" {
			n, ok := findNode(ref)
			if !ok {
				answer(w, http.StatusNotFound, api.Error{Message: "no such node: " + ref})
				return
			}
			nodeID = n.ID
		}
		out := []*api.Task{}
		for _, t := range d.tasks {
			if (serviceID == "" || t.ServiceID == serviceID) && (nodeID == "" || t.NodeID == nodeID) {
				out = append(out, t)
			}
		}
		answer(w, http.StatusOK, out)
	})
	mux.HandleFunc("GET /v1/services/{ref}/logs", func(w http.ResponseWriter, r *http.Request) {
		d.mu.Lock()
		_, ok := d.findService(r.PathValue("ref"))
		logs := d.logs
		d.mu.Unlock()
		if !ok {
			notFound(w, r.PathValue("ref"))
			return
		}
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write([]byte(logs))
		if r.URL.Query().Get("follow") != "" {
			w.(http.Flusher).Flush()
			<-r.Context().Done()
		}
	})
}

func jsonString(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

// runOn runs a command line against the stub daemon.
func (ta *testApp) runOn(d *stubDaemon, args ...string) int {
	return ta.run(append([]string{"-H", "unix://" + d.sock}, args...)...)
}

func TestServiceCreateFlags(t *testing.T) {
	base := api.ServiceSpec{Name: "web", Mode: api.ModeReplicated, Replicas: 1, Task: api.TaskSpec{Image: "nginx"}}
	with := func(fn func(s *api.ServiceSpec)) api.ServiceSpec {
		s := base
		fn(&s)
		return s
	}
	tests := []struct {
		name    string
		args    []string // after "service create"
		want    api.ServiceSpec
		wantErr string
	}{
		{name: "defaults", args: []string{"--name", "web", "nginx"}, want: base},
		{
			name: "command after the image keeps its flags",
			args: []string{"--name", "web", "nginx", "sh", "-c", "--replicas", "x"},
			want: with(func(s *api.ServiceSpec) { s.Task.Command = []string{"sh", "-c", "--replicas", "x"} }),
		},
		{name: "replicas", args: []string{"--name", "web", "--replicas", "5", "nginx"},
			want: with(func(s *api.ServiceSpec) { s.Replicas = 5 })},
		{name: "zero replicas", args: []string{"--name", "web", "--replicas", "0", "nginx"},
			want: with(func(s *api.ServiceSpec) { s.Replicas = 0 })},
		{name: "global", args: []string{"--name", "web", "--mode", "global", "nginx"},
			want: with(func(s *api.ServiceSpec) { s.Mode, s.Replicas = api.ModeGlobal, 0 })},
		{name: "env", args: []string{"--name", "web", "-e", "A=1", "--env", "B=x=y", "-e", "C=", "nginx"},
			want: with(func(s *api.ServiceSpec) { s.Task.Env = []string{"A=1", "B=x=y", "C="} })},
		{name: "labels", args: []string{"--name", "web", "--label", "prometheus.port=8080", "-l", "prometheus.path=/m", "-l", "team=a=b",
			"-l", "empty=", "-l", "team=c", "nginx"},
			want: with(func(s *api.ServiceSpec) {
				s.Labels = map[string]string{"prometheus.port": "8080", "prometheus.path": "/m", "team": "c", "empty": ""}
			})},
		{name: "cpus", args: []string{"--name", "web", "--reserve-cpu", "0.5", "--limit-cpu", "1.25", "nginx"},
			want: with(func(s *api.ServiceSpec) {
				s.Task.Resources.Reservations.NanoCPUs, s.Task.Resources.Limits.NanoCPUs = 5e8, 1.25e9
			})},
		{name: "memory", args: []string{"--name", "web", "--reserve-memory", "64MiB", "--limit-memory", "1g", "nginx"},
			want: with(func(s *api.ServiceSpec) {
				s.Task.Resources.Reservations.MemoryBytes, s.Task.Resources.Limits.MemoryBytes = 64<<20, 1<<30
			})},
		{name: "constraints", args: []string{"--name", "web", "--constraint", "node.role==manager", "--constraint", "node.labels.zone!=b", "nginx"},
			want: with(func(s *api.ServiceSpec) {
				s.Task.Placement.Constraints = []string{"node.role==manager", "node.labels.zone!=b"}
			})},
		{name: "restart policy", args: []string{"--name", "web", "--restart-condition", "on-failure", "--restart-delay", "1s",
			"--restart-max-attempts", "3", "nginx"},
			want: with(func(s *api.ServiceSpec) {
				d := time.Second
				s.Task.Restart = api.RestartPolicy{Condition: api.RestartOnFailure, Delay: &d, MaxAttempts: 3}
			})},
		{name: "grace, workdir, user", args: []string{"--name", "web", "--stop-grace-period", "1m30s", "--workdir", "/srv", "-u", "1000:1000", "nginx"},
			want: with(func(s *api.ServiceSpec) {
				s.Task.StopGracePeriod, s.Task.Workdir, s.Task.User = 90*time.Second, "/srv", "1000:1000"
			})},
		{name: "detach explicit", args: []string{"--name", "web", "--detach", "nginx"}, want: base},
		{name: "health check", args: []string{"--name", "web", "--health-cmd", "wget -qO- localhost || exit 1", "--health-interval", "2s",
			"--health-timeout", "1s", "--health-retries", "5", "--health-start-period", "10s", "nginx"},
			want: with(func(s *api.ServiceSpec) {
				s.Task.Healthcheck = &api.HealthConfig{Test: []string{"CMD-SHELL", "wget -qO- localhost || exit 1"},
					Interval: 2 * time.Second, Timeout: time.Second, Retries: 5, StartPeriod: 10 * time.Second}
			})},
		{name: "health timing only", args: []string{"--name", "web", "--health-interval", "1s", "nginx"},
			want: with(func(s *api.ServiceSpec) { s.Task.Healthcheck = &api.HealthConfig{Interval: time.Second} })},
		{name: "no healthcheck", args: []string{"--name", "web", "--no-healthcheck", "nginx"},
			want: with(func(s *api.ServiceSpec) { s.Task.Healthcheck = &api.HealthConfig{Test: []string{"NONE"}} })},
		{name: "no healthcheck with a command", args: []string{"--name", "web", "--no-healthcheck", "--health-cmd", "true", "nginx"},
			wantErr: "--no-healthcheck conflicts with the --health-* flags"},
		{name: "bad health interval", args: []string{"--name", "web", "--health-interval", "2", "nginx"}, wantErr: `--health-interval "2": want a duration`},
		{name: "tiny health timeout", args: []string{"--name", "web", "--health-timeout", "1us", "nginx"}, wantErr: `--health-timeout "1us": at least 1ms`},
		{name: "bad health retries", args: []string{"--name", "web", "--health-retries", "-1", "nginx"}, wantErr: `--health-retries "-1": want a number of checks`},

		{name: "no name", args: []string{"nginx"}, wantErr: "--name is required"},
		{name: "no image", args: []string{"--name", "web"}, wantErr: `"shoal service create" needs an image`},
		{name: "bad mode", args: []string{"--name", "web", "--mode", "daemon", "nginx"}, wantErr: `--mode "daemon": want replicated, global, replicated-job or global-job`},
		{name: "global with replicas", args: []string{"--name", "web", "--mode", "global", "--replicas", "2", "nginx"},
			wantErr: "--replicas: a global service runs one task per node"},
		{name: "bad replicas", args: []string{"--name", "web", "--replicas", "-1", "nginx"}, wantErr: `--replicas "-1": want a number of tasks`},
		{name: "bad env", args: []string{"--name", "web", "-e", "A", "nginx"}, wantErr: `--env "A": want KEY=VALUE`},
		{name: "env without key", args: []string{"--name", "web", "-e", "=1", "nginx"}, wantErr: `--env "=1": want KEY=VALUE`},
		{name: "bad label", args: []string{"--name", "web", "--label", "team", "nginx"}, wantErr: `--label "team": want KEY=VALUE`},
		{name: "label without key", args: []string{"--name", "web", "--label", "=a", "nginx"}, wantErr: `--label "=a": want KEY=VALUE`},
		{name: "label key with space", args: []string{"--name", "web", "--label", "my team=a", "nginx"}, wantErr: `--label "my team=a": want KEY=VALUE`},
		{name: "bad prometheus port", args: []string{"--name", "web", "--label", "prometheus.port=http", "nginx"},
			wantErr: `--label "prometheus.port=http": want a port number from 1 to 65535`},
		{name: "prometheus port out of range", args: []string{"--name", "web", "--label", "prometheus.port=70000", "nginx"},
			wantErr: `--label "prometheus.port=70000": want a port number`},
		{name: "bad reserve-cpu", args: []string{"--name", "web", "--reserve-cpu", "half", "nginx"}, wantErr: `--reserve-cpu "half": want a number of CPUs`},
		{name: "too precise limit-cpu", args: []string{"--name", "web", "--limit-cpu", "0.0000000001", "nginx"}, wantErr: `--limit-cpu "0.0000000001": too precise`},
		{name: "bad reserve-memory unit", args: []string{"--name", "web", "--reserve-memory", "64XB", "nginx"}, wantErr: `--reserve-memory "64XB": unknown unit "XB"`},
		{name: "bad limit-memory", args: []string{"--name", "web", "--limit-memory", "-5M", "nginx"}, wantErr: `--limit-memory "-5M": want a size`},
		{name: "reserve above limit", args: []string{"--name", "web", "--reserve-memory", "2G", "--limit-memory", "1G", "nginx"},
			wantErr: "--reserve-memory 2G is more than --limit-memory 1G"},
		{name: "cpu reserve above limit", args: []string{"--name", "web", "--reserve-cpu", "2", "--limit-cpu", "1", "nginx"},
			wantErr: "--reserve-cpu 2 is more than --limit-cpu 1"},
		{name: "bad constraint", args: []string{"--name", "web", "--constraint", "node.role=manager", "nginx"}, wantErr: `--constraint "node.role=manager": want KEY==VALUE`},
		{name: "bad restart condition", args: []string{"--name", "web", "--restart-condition", "always", "nginx"}, wantErr: `--restart-condition "always": want any, on-failure or none`},
		{name: "bad restart delay", args: []string{"--name", "web", "--restart-delay", "5", "nginx"}, wantErr: `--restart-delay "5": want a duration`},
		{name: "negative grace", args: []string{"--name", "web", "--stop-grace-period", "-1s", "nginx"}, wantErr: `--stop-grace-period "-1s": want a duration`},
		{name: "bad max attempts", args: []string{"--name", "web", "--restart-max-attempts", "many", "nginx"}, wantErr: `--restart-max-attempts "many": want a number`},
		{name: "bad timeout", args: []string{"--name", "web", "--timeout", "0s", "nginx"}, wantErr: `--timeout "0s": want a duration above 0`},
		{name: "unknown flag", args: []string{"--name", "web", "--bogus", "nginx"}, wantErr: "unknown flag: --bogus\nSee 'shoal service create --help'."},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := newStubDaemon(t)
			d.setup(func(s *stubServices) { s.services = nil })
			ta := newTestApp(t, nil)
			code := ta.runOn(d, append([]string{"service", "create"}, tt.args...)...)
			d.mu.Lock()
			created := d.created
			d.mu.Unlock()
			if tt.wantErr != "" {
				if code != 1 {
					t.Errorf("got exit code %d, want 1", code)
				}
				if got := ta.stderr.String(); !strings.HasPrefix(got, "Error: ") || !strings.Contains(got, tt.wantErr) {
					t.Errorf("got stderr %q, want an error holding %q", got, tt.wantErr)
				}
				if len(created) != 0 {
					t.Errorf("created %+v, want nothing created", created)
				}
				return
			}
			if code != 0 {
				t.Fatalf("got exit code %d (stderr %q), want 0", code, ta.stderr.String())
			}
			if len(created) != 1 {
				t.Fatalf("created %d services, want 1", len(created))
			}
			if !reflect.DeepEqual(created[0], tt.want) {
				t.Errorf("got spec\n%+v\nwant\n%+v", created[0], tt.want)
			}
			if got, want := ta.stdout.String(), testID("n3ws3rv1c3id")+"\n"; got != want {
				t.Errorf("got stdout %q, want the service ID %q (detached when stdout is no terminal)", got, want)
			}
		})
	}
}

func TestParseBytes(t *testing.T) {
	tests := []struct {
		in      string
		want    int64
		wantErr string
	}{
		{in: "0", want: 0},
		{in: "512", want: 512},
		{in: "512B", want: 512},
		{in: "512b", want: 512},
		{in: "4K", want: 4 << 10},
		{in: "4k", want: 4 << 10},
		{in: "4KB", want: 4 << 10},
		{in: "4KiB", want: 4 << 10},
		{in: "64M", want: 64 << 20},
		{in: "64m", want: 64 << 20},
		{in: "64MB", want: 64 << 20},
		{in: "64MiB", want: 64 << 20},
		{in: "64 MiB", want: 64 << 20},
		{in: "2G", want: 2 << 30},
		{in: "2gb", want: 2 << 30},
		{in: "2GiB", want: 2 << 30},
		{in: "1.5GiB", want: 3 << 29},
		{in: "1.5", want: 1},
		{in: "1T", want: 1 << 40},
		{in: "", wantErr: "want a size"},
		{in: "M", wantErr: "want a size"},
		{in: "-1M", wantErr: "want a size"},
		{in: "1.M", wantErr: "want a size"},
		{in: "64 M B", wantErr: "want a size"},
		{in: "64XB", wantErr: `unknown unit "XB"`},
		{in: "64Mi", wantErr: `unknown unit "Mi"`},
		{in: "9999999999G", wantErr: "too large"},
	}
	for _, tt := range tests {
		got, err := parseBytes(tt.in)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("parseBytes(%q): got %d, %v, want error %q", tt.in, got, err, tt.wantErr)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("parseBytes(%q): got %d, %v, want %d", tt.in, got, err, tt.want)
		}
	}
}

func TestParseCPUs(t *testing.T) {
	tests := []struct {
		in      string
		want    int64
		wantErr string
	}{
		{in: "0", want: 0},
		{in: "1", want: 1e9},
		{in: "0.5", want: 5e8},
		{in: "2.000000001", want: 2000000001},
		{in: "16", want: 16e9},
		{in: "0.0000000001", wantErr: "too precise"},
		{in: "", wantErr: "want a number of CPUs"},
		{in: "-1", wantErr: "want a number of CPUs"},
		{in: ".5", wantErr: "want a number of CPUs"},
		{in: "1/2", wantErr: "want a number of CPUs"},
		{in: "1e3", wantErr: "want a number of CPUs"},
		{in: "99999999999", wantErr: "too large"},
	}
	for _, tt := range tests {
		got, err := parseCPUs(tt.in)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("parseCPUs(%q): got %d, %v, want error %q", tt.in, got, err, tt.wantErr)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("parseCPUs(%q): got %d, %v, want %d", tt.in, got, err, tt.want)
		}
	}
}

func TestParseScale(t *testing.T) {
	tests := []struct {
		in      string
		want    scaleArg
		wantErr string
	}{
		{in: "web=3", want: scaleArg{service: "web", replicas: 3}},
		{in: "web=0", want: scaleArg{service: "web", replicas: 0}},
		{in: "w3bs3rv1c3id=10", want: scaleArg{service: "w3bs3rv1c3id", replicas: 10}},
		{in: "web", wantErr: `"web": want SERVICE=REPLICAS`},
		{in: "=3", wantErr: `"=3": want SERVICE=REPLICAS`},
		{in: "web=", wantErr: `got ""`},
		{in: "web=-1", wantErr: `got "-1"`},
		{in: "web=three", wantErr: `got "three"`},
		{in: "web=3=4", wantErr: `got "3=4"`},
	}
	for _, tt := range tests {
		got, err := parseScale(tt.in)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("parseScale(%q): got %+v, %v, want error %q", tt.in, got, err, tt.wantErr)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("parseScale(%q): got %+v, %v, want %+v", tt.in, got, err, tt.want)
		}
	}
}

func TestServiceVerbs(t *testing.T) {
	webPs := "" +
		"ID             NAME        IMAGE        NODE        DESIRED STATE   CURRENT STATE                    ERROR\n" +
		"webtask1new0   web.1       nginx:1.27   worker-1    Running         Running 5 seconds ago            \n" +
		"webtask1old0    \\_ web.1   nginx:1.27   worker-1    Shutdown        Failed 2 minutes ago             \"task: non-zero exit (1)\"\n" +
		"webtask1old1    \\_ web.1   nginx:1.27   gone        Shutdown        Failed 10 minutes ago            \"task: non-zero exit (137)\"\n" +
		"webtask2new0   web.2       nginx:1.27   manager-1   Running         Running about an hour ago        \n" +
		"webtask3new0   web.3       nginx:1.27               Running         Pending less than a second ago   \"no suitable node (insufficien…\"\n"
	tests := []struct {
		name         string
		args         []string
		wantCode     int
		wantStdout   string // exact, unless anyStdout
		anyStdout    bool
		wantStderr   string
		wantRequests []string // nil skips the check
		wantScaled   []string
	}{
		{
			name: "ls",
			args: []string{"service", "ls"},
			wantStdout: "" +
				"ID             NAME    MODE         REPLICAS   IMAGE\n" +
				"ag3nts3rv1c3   agent   global       2/2        busybox\n" +
				"w3bs3rv1c3id   web     replicated   2/3        nginx:1.27\n",
			wantRequests: []string{"GET /v1/services"},
		},
		{name: "ls -q", args: []string{"service", "ls", "-q"}, wantStdout: "ag3nts3rv1c3\nw3bs3rv1c3id\n"},
		{name: "ps", args: []string{"service", "ps", "web"}, wantStdout: webPs,
			wantRequests: []string{"GET /v1/tasks?service=web", "GET /v1/nodes"}},
		{name: "ps -q", args: []string{"service", "ps", "-q", "web"},
			wantStdout:   "webtask1new0\nwebtask1old0\nwebtask1old1\nwebtask2new0\nwebtask3new0\n",
			wantRequests: []string{"GET /v1/tasks?service=web"}},
		{name: "ps -q --no-trunc", args: []string{"service", "ps", "-q", "--no-trunc", "agent"},
			wantStdout: testID("agenttaskmgr") + "\n" + testID("agenttaskwk1") + "\n"},
		{
			name: "ps of a global service",
			args: []string{"service", "ps", "agent"},
			wantStdout: "" +
				"ID             NAME         IMAGE     NODE        DESIRED STATE   CURRENT STATE                ERROR\n" +
				"agenttaskmgr   agent.mgr1   busybox   manager-1   Running         Running 3 hours ago          \n" +
				"agenttaskwk1   agent.wrk1   busybox   worker-1    Running         Running about a minute ago   \n",
		},
		{name: "ps of a missing service", args: []string{"service", "ps", "nope"}, wantCode: 1,
			wantStderr: "Error: no such service: nope\n"},
		{
			name: "node ps of the local node",
			args: []string{"node", "ps"},
			wantStdout: "" +
				"ID             NAME         IMAGE        NODE        DESIRED STATE   CURRENT STATE               ERROR\n" +
				"agenttaskmgr   agent.mgr1   busybox      manager-1   Running         Running 3 hours ago         \n" +
				"webtask2new0   web.2        nginx:1.27   manager-1   Running         Running about an hour ago   \n",
			wantRequests: []string{"GET /v1/info", "GET /v1/tasks?node=mgr1", "GET /v1/nodes"},
		},
		{
			name: "node ps NODE --no-trunc",
			args: []string{"node", "ps", "--no-trunc", "worker-1"},
			wantStdout: "" +
				"ID                          NAME         IMAGE                                NODE       DESIRED STATE   CURRENT STATE                ERROR\n" +
				testID("agenttaskwk1") + "   agent.wrk1   busybox                              worker-1   Running         Running about a minute ago   \n" +
				testID("webtask1new0") + "   web.1        nginx:1.27@sha256:0123456789abcdef   worker-1   Running         Running 5 seconds ago        \n" +
				testID("webtask1old0") + "    \\_ web.1    nginx:1.27@sha256:0123456789abcdef   worker-1   Shutdown        Failed 2 minutes ago         \"task: non-zero exit (1)\"\n",
			wantRequests: []string{"GET /v1/tasks?node=worker-1", "GET /v1/nodes"},
		},
		{name: "update", args: []string{"service", "update", "--detach", "--env-add", "V=2", "--update-parallelism", "2", "web"},
			wantStdout:   "web\n",
			wantRequests: []string{"GET /v1/services/web", "POST /v1/services/" + testID("w3bs3rv1c3id") + "/update"}},
		{name: "update with a bad flag sends nothing", args: []string{"service", "update", "--update-order", "sideways", "web"},
			wantCode: 1, wantStderr: "Error: --update-order \"sideways\": want stop-first or start-first\n",
			wantRequests: []string{"GET /v1/services/web"}},
		{name: "update with a bad env sends nothing", args: []string{"service", "update", "--env-add", "NOVALUE", "web"},
			wantCode: 1, wantStderr: "Error: --env-add \"NOVALUE\": want KEY=VALUE\n",
			wantRequests: []string{"GET /v1/services/web"}},
		{name: "inspect with one missing", args: []string{"service", "inspect", "web", "nope"}, wantCode: 1,
			anyStdout: true, wantStderr: "Error: no such service: nope\n"},
		{
			name:         "scale",
			args:         []string{"service", "scale", "web=5", "w3bs3rv1c3id=0"},
			wantStdout:   "web scaled to 5\nw3bs3rv1c3id scaled to 0\n",
			wantRequests: []string{"POST /v1/services/web/update", "POST /v1/services/w3bs3rv1c3id/update"},
			wantScaled:   []string{"web=5", "w3bs3rv1c3id=0"},
		},
		{
			name:       "scale, some failing",
			args:       []string{"service", "scale", "agent=2", "web=4", "nope=1"},
			wantCode:   1,
			wantStdout: "web scaled to 4\n",
			wantStderr: "Error: agent=2: service agent is global: it cannot be scaled\nError: nope=1: no such service: nope\n",
			wantScaled: []string{"web=4"},
		},
		{
			name:         "scale with bad args does nothing",
			args:         []string{"service", "scale", "web=4", "agent", "db=x"},
			wantCode:     1,
			wantStderr:   "Error: \"agent\": want SERVICE=REPLICAS\n\"db=x\": want SERVICE=REPLICAS with a number of replicas, got \"x\"\nSee 'shoal service scale --help'.\n",
			wantRequests: []string{},
		},
		{name: "scale nothing", args: []string{"service", "scale"}, wantCode: 1,
			wantStderr: "Error: want at least one SERVICE=REPLICAS\nSee 'shoal service scale --help'.\n", wantRequests: []string{}},
		{
			name:         "rm, one missing",
			args:         []string{"service", "rm", "web", "nope", "agent"},
			wantCode:     1,
			wantStdout:   "web\nagent\n",
			wantStderr:   "Error: no such service: nope\n",
			wantRequests: []string{"DELETE /v1/services/web", "DELETE /v1/services/nope", "DELETE /v1/services/agent"},
		},
		{name: "logs", args: []string{"service", "logs", "web"}, wantStdout: "web.1.x@worker-1    | hello\n",
			wantRequests: []string{"GET /v1/services/web/logs"}},
		{name: "logs of a missing service", args: []string{"service", "logs", "nope"}, wantCode: 1,
			wantStderr: "Error: no such service: nope\n"},
		{name: "ps needs a service", args: []string{"service", "ps"}, wantCode: 1,
			wantStderr: "Error: accepts 1 arg(s), received 0\nSee 'shoal service ps --help'.\n", wantRequests: []string{}},
		{name: "ls bad format", args: []string{"service", "ls", "--format", "yaml"}, wantCode: 1,
			wantStderr: "Error: --format \"yaml\": want json\n", wantRequests: []string{}},
		{name: "node ps takes one node", args: []string{"node", "ps", "a", "b"}, wantCode: 1,
			wantStderr: "Error: accepts at most 1 arg(s), received 2\nSee 'shoal node ps --help'.\n", wantRequests: []string{}},
		{name: "unknown service verb", args: []string{"service", "bogus"}, wantCode: 1,
			wantStderr: "Error: unknown command \"bogus\" for \"shoal service\"\nSee 'shoal service --help'.\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := newStubDaemon(t)
			d.setup(func(s *stubServices) { s.logs = "web.1.x@worker-1    | hello\n" })
			ta := newTestApp(t, nil)
			code := ta.runOn(d, tt.args...)
			if code != tt.wantCode {
				t.Errorf("got exit code %d (stderr %q), want %d", code, ta.stderr.String(), tt.wantCode)
			}
			if !tt.anyStdout {
				if got := ta.stdout.String(); got != tt.wantStdout {
					t.Errorf("got stdout\n%s\nwant\n%s", got, tt.wantStdout)
				}
			}
			if got := ta.stderr.String(); got != tt.wantStderr {
				t.Errorf("got stderr %q, want %q", got, tt.wantStderr)
			}
			if tt.wantRequests != nil {
				got := d.requestLog()
				if got == nil {
					got = []string{}
				}
				if !reflect.DeepEqual(got, tt.wantRequests) {
					t.Errorf("got requests %q, want %q", got, tt.wantRequests)
				}
			}
			d.mu.Lock()
			scaled := d.scaled
			d.mu.Unlock()
			if !reflect.DeepEqual(scaled, tt.wantScaled) {
				t.Errorf("got scaled %q, want %q", scaled, tt.wantScaled)
			}
		})
	}
}

func TestServiceJSON(t *testing.T) {
	tests := []struct {
		args    []string
		wantIDs []string
	}{
		{[]string{"service", "ls", "--format", "json"}, []string{agentID, webID}},
		{[]string{"service", "inspect", "web", "agent"}, []string{webID, agentID}},
		{[]string{"service", "inspect", "web", "nope"}, []string{webID}},
		{[]string{"service", "ps", "--format", "json", "agent"}, []string{testID("agenttaskmgr"), testID("agenttaskwk1")}},
		{[]string{"node", "ps", "--format", "json", "manager-1"}, []string{testID("agenttaskmgr"), testID("webtask2new0")}},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			d := newStubDaemon(t)
			ta := newTestApp(t, nil)
			ta.runOn(d, tt.args...)
			var got []struct {
				ID string `json:"id"`
			}
			if err := json.Unmarshal([]byte(ta.stdout.String()), &got); err != nil {
				t.Fatalf("decode %q: %v", ta.stdout.String(), err)
			}
			var ids []string
			for _, x := range got {
				ids = append(ids, x.ID)
			}
			if !reflect.DeepEqual(ids, tt.wantIDs) {
				t.Errorf("got IDs %q, want %q", ids, tt.wantIDs)
			}
		})
	}
}

func TestServiceLsEmpty(t *testing.T) {
	d := newStubDaemon(t)
	d.setup(func(s *stubServices) { s.services = nil })
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"service", "ls"}, "ID   NAME   MODE   REPLICAS   IMAGE\n"},
		{[]string{"service", "ls", "--format", "json"}, "[]\n"},
		{[]string{"service", "ls", "-q"}, ""},
	} {
		ta := newTestApp(t, nil)
		if code := ta.runOn(d, tt.args...); code != 0 {
			t.Errorf("%q: got exit code %d (stderr %q), want 0", tt.args, code, ta.stderr.String())
		}
		if got := ta.stdout.String(); got != tt.want {
			t.Errorf("%q: got %q, want %q", tt.args, got, tt.want)
		}
	}
}

// convergeStub makes the new service reach running tasks one poll at a
// time, with unschedulable errors on the way. Each poll moves the fake
// clock one tick on, so the wait moves without real time passing.
func convergeStub(t *testing.T, ta *testApp, running func(poll int) uint64) *stubDaemon {
	t.Helper()
	d := newStubDaemon(t)
	d.setup(func(s *stubServices) {
		s.onServiceGet = func(n int) {
			i, ok := s.findService("web2")
			if !ok {
				return
			}
			v := &s.services[i]
			v.Running = running(n)
			if n == 1 {
				// The same reason twice, and once more on the next poll: printed once.
				for slot := uint64(1); slot <= 2; slot++ {
					s.tasks = append(s.tasks, &api.Task{ID: testID("pend"), ServiceID: v.ID, ServiceName: "web2", Slot: slot,
						Status: api.TaskStatus{State: api.TaskPending, Err: "no suitable node (insufficient memory on 3 nodes)"}})
				}
			}
			ta.clock.Advance(convergePoll)
		}
	})
	return d
}

func TestServiceCreateWaits(t *testing.T) {
	ta := newTestApp(t, nil)
	d := convergeStub(t, ta, func(poll int) uint64 { return uint64(min(poll-1, 3)) })
	code := ta.runOn(d, "service", "create", "--name", "web2", "--replicas", "3", "--detach=false", "nginx")
	if code != 0 {
		t.Fatalf("got exit code %d (stderr %q), want 0", code, ta.stderr.String())
	}
	want := testID("n3ws3rv1c3id") + "\n" +
		"0/3 tasks running\n" +
		"web2.1: no suitable node (insufficient memory on 3 nodes)\n" +
		"1/3 tasks running\n" +
		"2/3 tasks running\n" +
		"3/3 tasks running\n" +
		"verify: Service converged\n"
	if got := ta.stdout.String(); got != want {
		t.Errorf("got stdout\n%s\nwant\n%s", got, want)
	}
	// Each poll reads the service and its tasks.
	wantReq := []string{"POST /v1/services"}
	for range 4 {
		wantReq = append(wantReq, "GET /v1/services/"+testID("n3ws3rv1c3id"), "GET /v1/tasks?service="+testID("n3ws3rv1c3id"))
	}
	if got := d.requestLog(); !reflect.DeepEqual(got, wantReq) {
		t.Errorf("got requests %q, want %q", got, wantReq)
	}
}

func TestServiceCreateGivesUp(t *testing.T) {
	ta := newTestApp(t, nil)
	d := convergeStub(t, ta, func(poll int) uint64 { return 1 })
	code := ta.runOn(d, "service", "create", "--name", "web2", "--replicas", "2", "--detach=false", "--timeout", "1s", "nginx")
	if code != 1 {
		t.Errorf("got exit code %d, want 1", code)
	}
	want := "Error: service web2 did not converge within 1s (1/2 tasks running: no suitable node (insufficient memory on 3 nodes))\n"
	if got := ta.stderr.String(); got != want {
		t.Errorf("got stderr %q, want %q", got, want)
	}
	// 4 polls, 250 ms of fake time apart, reach the 1 s deadline.
	d.mu.Lock()
	polls := d.serviceGets
	d.mu.Unlock()
	if polls != 4 {
		t.Errorf("got %d polls, want 4", polls)
	}
}

func TestServiceCreateGlobalWaitsForTasks(t *testing.T) {
	// A new global service has no tasks yet: 0/0 is not converged.
	ta := newTestApp(t, nil)
	d := newStubDaemon(t)
	d.setup(func(s *stubServices) {
		s.onServiceGet = func(n int) {
			if i, ok := s.findService("web2"); ok && n >= 2 {
				s.services[i].Desired, s.services[i].Running = 3, uint64(min(n-1, 3))
			}
			ta.clock.Advance(convergePoll)
		}
	})
	if code := ta.runOn(d, "service", "create", "--name", "web2", "--mode", "global", "--detach=false", "nginx"); code != 0 {
		t.Fatalf("got exit code %d (stderr %q), want 0", code, ta.stderr.String())
	}
	if got, want := ta.stdout.String(), testID("n3ws3rv1c3id")+"\n0/0 tasks running\n1/3 tasks running\n2/3 tasks running\n3/3 tasks running\nverify: Service converged\n"; got != want {
		t.Errorf("got stdout\n%s\nwant\n%s", got, want)
	}
}

// lockedBuffer is a strings.Builder safe to read while a command writes it.
type lockedBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func TestServiceLogsFollowUntilCanceled(t *testing.T) {
	d := newStubDaemon(t)
	d.setup(func(s *stubServices) { s.logs = "web.1.x@worker-1    | hello\n" })
	ta := newTestApp(t, nil)
	var out lockedBuffer
	ta.app.stdout = &out
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan int, 1)
	go func() { done <- ta.execute(ctx, []string{"-H", "unix://" + d.sock, "service", "logs", "-f", "web"}) }()

	deadline := time.Now().Add(10 * time.Second)
	for out.String() == "" {
		if time.Now().After(deadline) {
			t.Fatal("no log lines within 10s")
		}
		select {
		case code := <-done:
			t.Fatalf("logs -f ended with code %d (stderr %q) before it was canceled", code, ta.stderr.String())
		case <-time.After(5 * time.Millisecond):
		}
	}
	cancel()
	select {
	case code := <-done:
		if code != 0 {
			t.Errorf("got exit code %d (stderr %q), want 0", code, ta.stderr.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("logs -f still running 10s after cancel")
	}
	if got, want := out.String(), "web.1.x@worker-1    | hello\n"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
	if got, want := d.requestLog(), []string{"GET /v1/services/web/logs?follow=1"}; !reflect.DeepEqual(got, want) {
		t.Errorf("got requests %q, want %q", got, want)
	}
}
