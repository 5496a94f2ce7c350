package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/shoal-dev/shoal/agent"
	"github.com/shoal-dev/shoal/api"
	"github.com/shoal-dev/shoal/clock"
	mraft "github.com/shoal-dev/shoal/manager/raft"
	"github.com/shoal-dev/shoal/node"
)

// testNow is the time of the test apps' fake clock.
var testNow = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

// testApp is an app with captured output and a fake clock whose daemon
// verbs record the node.Config instead of running a node.
type testApp struct {
	*app
	stdout, stderr strings.Builder
	cfgs           []node.Config
	clock          *clock.Fake
}

func newTestApp(t *testing.T, env map[string]string) *testApp {
	t.Helper()
	ta := &testApp{clock: clock.NewFake(testNow)}
	ta.app = &app{
		clock:  ta.clock,
		stdout: &ta.stdout,
		stderr: &ta.stderr,
		getenv: func(k string) string { return env[k] },
		runNode: func(_ context.Context, cfg node.Config) error {
			ta.cfgs = append(ta.cfgs, cfg)
			return nil
		},
	}
	return ta
}

func (ta *testApp) run(args ...string) int {
	return ta.execute(context.Background(), args)
}

func TestDaemonFlags(t *testing.T) {
	dir := t.TempDir()
	defLimits := agent.Limits{Starts: agent.DefaultMaxConcurrentStarts, Pulls: agent.DefaultMaxConcurrentPulls}
	rhb, rel := mraft.DefaultHeartbeatTimeout, mraft.DefaultElectionTimeout
	tests := []struct {
		name    string
		args    []string
		want    node.Config // compared without Ready and Logger
		wantErr string
	}{
		{
			name: "init defaults",
			args: []string{"init", "--advertise-addr", "10.0.0.1"},
			want: node.Config{Mode: node.ModeInit, DataDir: dir, AdvertiseAddr: "10.0.0.1", JoinBurst: 10, JoinRate: 1,
				Dispatcher: api.DispatcherConfig{HeartbeatPeriod: time.Second, NodeDownGrace: 15 * time.Second}, Limits: defLimits, RaftHeartbeat: rhb, RaftElection: rel},
		},
		{
			name: "init all flags",
			args: []string{"init", "--advertise-addr", "10.0.0.1", "--listen-addr", "0.0.0.0", "--api-port", "3377",
				"--raft-port", "3378", "--gossip-port", "8946", "--metrics-addr", "127.0.0.1:9323",
				"--containerd-address", "/tmp/c.sock", "--hostname", "h1", "--log-level", "debug",
				"--dispatcher-heartbeat-period", "2s", "--node-down-grace", "30s"},
			want: node.Config{Mode: node.ModeInit, DataDir: dir, AdvertiseAddr: "10.0.0.1", ListenIP: "0.0.0.0",
				APIPort: 3377, RaftPort: 3378, GossipPort: 8946, MetricsAddr: "127.0.0.1:9323",
				ContainerdAddress: "/tmp/c.sock", Hostname: "h1", JoinBurst: 10, JoinRate: 1,
				Dispatcher: api.DispatcherConfig{HeartbeatPeriod: 2 * time.Second, NodeDownGrace: 30 * time.Second}, Limits: defLimits, RaftHeartbeat: rhb, RaftElection: rel},
		},
		{
			name: "join",
			args: []string{"join", "--token", "TOK", "--advertise-addr", "10.0.0.2", "10.0.0.1"},
			want: node.Config{Mode: node.ModeJoin, DataDir: dir, AdvertiseAddr: "10.0.0.2", JoinToken: "TOK",
				JoinAddr: "10.0.0.1:2377", JoinBurst: 10, JoinRate: 1, Limits: defLimits, RaftHeartbeat: rhb, RaftElection: rel},
		},
		{
			name: "join infers the advertise address",
			args: []string{"join", "--token", "TOK", "127.0.0.1:3377"},
			want: node.Config{Mode: node.ModeJoin, DataDir: dir, AdvertiseAddr: "127.0.0.1", JoinToken: "TOK",
				JoinAddr: "127.0.0.1:3377", JoinBurst: 10, JoinRate: 1, Limits: defLimits, RaftHeartbeat: rhb, RaftElection: rel},
		},
		{
			name: "agent",
			args: []string{"agent", "--hostname", "h2"},
			want: node.Config{Mode: node.ModeResume, DataDir: dir, Hostname: "h2", JoinBurst: 10, JoinRate: 1, Limits: defLimits, RaftHeartbeat: rhb, RaftElection: rel},
		},
		{
			name: "join limits for simulated nodes",
			args: []string{"agent", "--join-burst", "1000", "--join-rate", "0"},
			want: node.Config{Mode: node.ModeResume, DataDir: dir, JoinBurst: 1000, JoinRate: 0, Limits: defLimits, RaftHeartbeat: rhb, RaftElection: rel},
		},
		{
			name: "raft timeouts",
			args: []string{"agent", "--raft-heartbeat-timeout", "2s", "--raft-election-timeout", "3s"},
			want: node.Config{Mode: node.ModeResume, DataDir: dir, JoinBurst: 10, JoinRate: 1, Limits: defLimits,
				RaftHeartbeat: 2 * time.Second, RaftElection: 3 * time.Second},
		},
		{name: "raft election shorter than heartbeat", args: []string{"agent", "--raft-heartbeat-timeout", "2s"},
			wantErr: "--raft-election-timeout 500ms: want at least --raft-heartbeat-timeout (2s), up to 1m"},
		{name: "raft heartbeat too short", args: []string{"agent", "--raft-heartbeat-timeout", "1ms"},
			wantErr: "--raft-heartbeat-timeout 1ms: want 50ms to 1m"},
		{
			name: "start and pull limits",
			args: []string{"agent", "--max-concurrent-starts", "8", "--max-concurrent-pulls", "1"},
			want: node.Config{Mode: node.ModeResume, DataDir: dir, JoinBurst: 10, JoinRate: 1, Limits: agent.Limits{Starts: 8, Pulls: 1}, RaftHeartbeat: rhb, RaftElection: rel},
		},
		{name: "bad start limit", args: []string{"agent", "--max-concurrent-starts", "0"}, wantErr: "--max-concurrent-starts 0, --max-concurrent-pulls 2: want at least 1 each"},
		{name: "init without advertise-addr", args: []string{"init"}, wantErr: "--advertise-addr is required"},
		{name: "init bad advertise-addr", args: []string{"init", "--advertise-addr", "host1"}, wantErr: `--advertise-addr "host1": want an IP address`},
		{name: "init bad listen-addr", args: []string{"init", "--advertise-addr", "10.0.0.1", "--listen-addr", "x"}, wantErr: `--listen-addr "x"`},
		{name: "init bad port", args: []string{"init", "--advertise-addr", "10.0.0.1", "--api-port", "0"}, wantErr: "--api-port 0: want a port from 1 to 65535"},
		{name: "init bad metrics-addr", args: []string{"init", "--advertise-addr", "10.0.0.1", "--metrics-addr", "9323"}, wantErr: `--metrics-addr "9323": want IP:PORT`},
		{name: "init bad log level", args: []string{"init", "--advertise-addr", "10.0.0.1", "--log-level", "loud"}, wantErr: `--log-level "loud"`},
		{name: "init extra arg", args: []string{"init", "--advertise-addr", "10.0.0.1", "extra"}, wantErr: `unknown command "extra" for "shoal init"`},
		{name: "init unknown flag", args: []string{"init", "--advertise", "10.0.0.1"}, wantErr: "unknown flag: --advertise\nSee 'shoal init --help'."},
		{name: "join without token", args: []string{"join", "--advertise-addr", "10.0.0.2", "10.0.0.1"}, wantErr: "a join token is required: --token-file PATH"},
		{name: "join with token and token file", args: []string{"join", "--token", "TOK", "--token-file", "/x", "10.0.0.1"}, wantErr: "--token and --token-file: give one of them"},
		{name: "join with a missing token file", args: []string{"join", "--token-file", "/nonexistent/tok", "10.0.0.1"}, wantErr: "--token-file: open /nonexistent/tok"},
		{name: "join without address", args: []string{"join", "--token", "TOK", "--advertise-addr", "10.0.0.2"}, wantErr: `"shoal join" needs the address of a manager`},
		{name: "join two addresses", args: []string{"join", "--token", "TOK", "10.0.0.1", "10.0.0.3"}, wantErr: `"shoal join" takes one manager address`},
		{name: "join bad advertise-addr", args: []string{"join", "--token", "TOK", "--advertise-addr", "10.0.0", "10.0.0.1"}, wantErr: `--advertise-addr "10.0.0": want an IP address`},
		{name: "join bad address", args: []string{"join", "--token", "TOK", "--advertise-addr", "10.0.0.2", "10.0.0.1:x"}, wantErr: `manager address "10.0.0.1:x"`},
		{name: "init heartbeat period too short", args: []string{"init", "--advertise-addr", "10.0.0.1", "--dispatcher-heartbeat-period", "1ms"},
			wantErr: "--dispatcher-heartbeat-period 1ms: want 100ms to 1m"},
		{name: "init negative grace", args: []string{"init", "--advertise-addr", "10.0.0.1", "--node-down-grace", "-1s"},
			wantErr: "--node-down-grace -1s: want more than 0, up to 1h"},
		{name: "join has no heartbeat period", args: []string{"join", "--token", "TOK", "--dispatcher-heartbeat-period", "2s", "10.0.0.1"},
			wantErr: "unknown flag: --dispatcher-heartbeat-period"},
		{name: "bad join burst", args: []string{"agent", "--join-burst", "0"}, wantErr: "--join-burst 0: want at least 1"},
		{name: "bad join rate", args: []string{"agent", "--join-rate", "-1"}, wantErr: "--join-rate -1: want 0 (no limit) or more"},
		{name: "agent takes no token", args: []string{"agent", "--token", "TOK"}, wantErr: "unknown flag: --token"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ta := newTestApp(t, map[string]string{"SHOAL_DATA_DIR": dir})
			code := ta.run(tt.args...)
			if tt.wantErr != "" {
				if code != 1 {
					t.Errorf("got exit code %d, want 1", code)
				}
				if !strings.Contains(ta.stderr.String(), "Error: "+tt.wantErr) {
					t.Errorf("got stderr %q, want it to hold %q", ta.stderr.String(), "Error: "+tt.wantErr)
				}
				if len(ta.cfgs) != 0 {
					t.Errorf("node ran with %+v, want no run", ta.cfgs[0])
				}
				return
			}
			if code != 0 {
				t.Fatalf("got exit code %d (stderr %q), want 0", code, ta.stderr.String())
			}
			if len(ta.cfgs) != 1 {
				t.Fatalf("node ran %d times, want 1", len(ta.cfgs))
			}
			got := ta.cfgs[0]
			if got.Ready == nil || got.Logger == nil {
				t.Errorf("got Ready %v and Logger %v, want both set", got.Ready != nil, got.Logger != nil)
			}
			got.Ready, got.Logger = nil, nil
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestDaemonRunError(t *testing.T) {
	ta := newTestApp(t, map[string]string{"SHOAL_DATA_DIR": t.TempDir()})
	ta.runNode = func(_ context.Context, cfg node.Config) error {
		cfg.Ready(node.ReadyInfo{NodeID: "n1", Role: "manager", Resumed: true, SocketPath: "/s"})
		return io.ErrUnexpectedEOF
	}
	if code := ta.run("agent"); code != 1 {
		t.Errorf("got exit code %d, want 1", code)
	}
	if got, want := ta.stderr.String(), "Error: "+io.ErrUnexpectedEOF.Error()+"\n"; got != want {
		t.Errorf("got stderr %q, want %q", got, want)
	}
	if got := ta.stdout.String(); !strings.HasPrefix(got, "Resumed node n1 (manager) from ") {
		t.Errorf("got stdout %q, want the resumed line", got)
	}
}

func TestDaemonStorageError(t *testing.T) {
	ta := newTestApp(t, map[string]string{"SHOAL_DATA_DIR": t.TempDir()})
	ta.runNode = func(context.Context, node.Config) error {
		return fmt.Errorf("open raft: %w", &mraft.StorageError{Op: "read", Path: "/d/raft/raft.db", Index: 7, Err: io.ErrUnexpectedEOF})
	}
	if code := ta.run("agent"); code != mraft.ExitStorage {
		t.Errorf("got exit code %d, want %d", code, mraft.ExitStorage)
	}
	if got := ta.stderr.String(); !strings.HasPrefix(got, "Error: open raft: raft storage: read entry 7 of /d/raft/raft.db") || strings.Contains(got, "goroutine") {
		t.Errorf("got stderr %q, want the damaged file named and no stack", got)
	}
}

func TestDaemonStopsOnContextEnd(t *testing.T) {
	ta := newTestApp(t, map[string]string{"SHOAL_DATA_DIR": t.TempDir()})
	ta.runNode = func(ctx context.Context, _ node.Config) error {
		<-ctx.Done()
		return ctx.Err()
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if code := ta.execute(ctx, []string{"agent"}); code != 0 {
		t.Errorf("got exit code %d (stderr %q), want 0 after a graceful stop", code, ta.stderr.String())
	}
}

func TestUsageErrors(t *testing.T) {
	tests := []struct {
		args    []string
		wantErr string
	}{
		{[]string{"bogus"}, `unknown command "bogus" for "shoal"`},
		{[]string{"node", "bogus"}, `unknown command "bogus" for "shoal node"`},
		{[]string{"node", "ls", "extra"}, `unknown command "extra" for "shoal node ls"`},
		{[]string{"node", "ls", "--bogus"}, "unknown flag: --bogus"},
		{[]string{"node", "inspect"}, "requires at least 1 arg(s)"},
		{[]string{"node", "update", "--availability", "drain"}, "accepts 1 arg(s), received 0"},
		{[]string{"node", "update", "--availability", "sleep", "n1"}, `--availability "sleep": want active, pause or drain`},
		{[]string{"node", "update", "--label-add", "zone", "n1"}, `--label-add "zone": want KEY=VALUE`},
		{[]string{"node", "ls", "--format", "yaml"}, `--format "yaml": want json`},
		{[]string{"join-token"}, "want one role, worker or manager"},
		{[]string{"join-token", "admin"}, "want one role, worker or manager"},
		{[]string{"leave", "now"}, `unknown command "now" for "shoal leave"`},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			ta := newTestApp(t, map[string]string{"SHOAL_HOST": "unix:///nonexistent/shoal.sock"})
			if code := ta.run(tt.args...); code != 1 {
				t.Errorf("got exit code %d, want 1", code)
			}
			if got := ta.stderr.String(); !strings.HasPrefix(got, "Error: ") || !strings.Contains(got, tt.wantErr) {
				t.Errorf("got stderr %q, want an error holding %q", got, tt.wantErr)
			}
		})
	}
}

func TestNoDaemon(t *testing.T) {
	dir := t.TempDir()
	ta := newTestApp(t, map[string]string{"SHOAL_DATA_DIR": dir})
	if code := ta.run("node", "ls"); code != 1 {
		t.Errorf("got exit code %d, want 1", code)
	}
	want := "Error: cannot reach the shoal daemon at unix://" + filepath.Join(dir, "shoal.sock") +
		": is it running? (start it with shoal init, shoal join or shoal agent)\n"
	if got := ta.stderr.String(); got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}

func TestHostURL(t *testing.T) {
	tests := []struct{ host, dataDir, want string }{
		{"", "/var/lib/shoal", "unix:///var/lib/shoal/shoal.sock"},
		{"unix:///run/s.sock", "/d", "unix:///run/s.sock"},
		{"tcp://10.0.0.1:2377", "/d", "tcp://10.0.0.1:2377"},
		{"10.0.0.1:2377", "/d", "tcp://10.0.0.1:2377"},
	}
	for _, tt := range tests {
		a := &app{host: tt.host, dataDir: tt.dataDir}
		if got := a.hostURL(); got != tt.want {
			t.Errorf("host %q: got %q, want %q", tt.host, got, tt.want)
		}
	}
}

func TestTCPHostNeedsCerts(t *testing.T) {
	dir := t.TempDir()
	ta := newTestApp(t, map[string]string{"SHOAL_DATA_DIR": dir})
	if code := ta.run("-H", "10.0.0.1:2377", "info"); code != 1 {
		t.Errorf("got exit code %d, want 1", code)
	}
	want := "Error: tls for tcp://10.0.0.1:2377: read cluster ca: open " + filepath.Join(dir, "certs", "ca.crt")
	if got := ta.stderr.String(); !strings.HasPrefix(got, want) {
		t.Errorf("got %q, want it to start with %q", got, want)
	}
}

// stubDaemon answers the API on a unix socket with fixed nodes, services
// and tasks, and records the requests it gets.
type stubDaemon struct {
	sock string

	mu       sync.Mutex
	requests []string // "METHOD /path?query"
	updates  []api.NodeUpdate
	tokens   api.JoinTokens
	stubServices
}

func newStubDaemon(t *testing.T) *stubDaemon {
	t.Helper()
	dir, err := os.MkdirTemp("", "shoal") // short: unix socket paths are limited
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	d := &stubDaemon{sock: filepath.Join(dir, "shoal.sock"), tokens: api.JoinTokens{Worker: "SWT-1", Manager: "SMT-1"},
		stubServices: stubServices{services: testServices(), tasks: testTasks()}}
	nodes := testNodes()
	find := func(ref string) (api.NodeView, bool) {
		for _, n := range nodes {
			if n.ID == ref || n.Description.Hostname == ref {
				return n, true
			}
		}
		return api.NodeView{}, false
	}
	answer := func(w http.ResponseWriter, code int, v any) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(code)
		_ = json.NewEncoder(w).Encode(v)
	}
	notFound := func(w http.ResponseWriter, ref string) {
		answer(w, http.StatusNotFound, api.Error{Message: "no such node: " + ref})
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/info", func(w http.ResponseWriter, _ *http.Request) {
		answer(w, http.StatusOK, api.Info{NodeID: "mgr1", Role: api.RoleManager, IsLeader: true,
			Endpoints: api.Endpoints{API: "10.0.0.1:2377"}})
	})
	mux.HandleFunc("GET /v1/nodes", func(w http.ResponseWriter, _ *http.Request) { answer(w, http.StatusOK, nodes) })
	mux.HandleFunc("GET /v1/nodes/{ref}", func(w http.ResponseWriter, r *http.Request) {
		if n, ok := find(r.PathValue("ref")); ok {
			answer(w, http.StatusOK, n)
			return
		}
		notFound(w, r.PathValue("ref"))
	})
	mux.HandleFunc("POST /v1/nodes/{ref}/{verb}", func(w http.ResponseWriter, r *http.Request) {
		n, ok := find(r.PathValue("ref"))
		if !ok {
			notFound(w, r.PathValue("ref"))
			return
		}
		if r.PathValue("verb") == "update" {
			var u api.NodeUpdate
			if err := json.NewDecoder(r.Body).Decode(&u); err != nil {
				answer(w, http.StatusBadRequest, api.Error{Message: err.Error()})
				return
			}
			d.mu.Lock()
			d.updates = append(d.updates, u)
			d.mu.Unlock()
		}
		answer(w, http.StatusOK, n)
	})
	mux.HandleFunc("DELETE /v1/nodes/{ref}", func(w http.ResponseWriter, r *http.Request) {
		if _, ok := find(r.PathValue("ref")); !ok {
			notFound(w, r.PathValue("ref"))
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("GET /v1/join-tokens", func(w http.ResponseWriter, _ *http.Request) {
		d.mu.Lock()
		defer d.mu.Unlock()
		answer(w, http.StatusOK, d.tokens)
	})
	mux.HandleFunc("POST /v1/join-tokens/rotate", func(w http.ResponseWriter, r *http.Request) {
		d.mu.Lock()
		defer d.mu.Unlock()
		switch api.NodeRole(r.URL.Query().Get("role")) {
		case api.RoleWorker:
			d.tokens.Worker = "SWT-2"
		case api.RoleManager:
			d.tokens.Manager = "SMT-2"
		}
		answer(w, http.StatusOK, d.tokens)
	})
	mux.HandleFunc("POST /v1/leave", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("force") == "" {
			answer(w, http.StatusConflict, api.Error{Message: "this node is a manager: use --force"})
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})

	d.serviceRoutes(mux, answer, find)

	l, err := net.Listen("unix", d.sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		d.mu.Lock()
		d.requests = append(d.requests, r.Method+" "+r.URL.RequestURI())
		d.mu.Unlock()
		mux.ServeHTTP(w, r)
	}))
	srv.Listener.Close()
	srv.Listener = l
	srv.Start()
	t.Cleanup(srv.Close)
	return d
}

func (d *stubDaemon) requestLog() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]string(nil), d.requests...)
}

func TestClientVerbs(t *testing.T) {
	tests := []struct {
		name         string
		args         []string
		wantCode     int
		wantStdout   string
		wantStderr   string
		wantRequests []string // in order; nil skips the check
	}{
		{
			name: "node ls",
			args: []string{"node", "ls"},
			wantStdout: "" +
				"ID       HOSTNAME    STATUS   AVAILABILITY   MANAGER STATUS   ADDRESS    ENGINE\n" +
				"mgr1 *   manager-1   Ready    Active         Leader           10.0.0.1   containerd 1.7.24\n" +
				"wrk1     worker-1    Ready    Pause                           10.0.0.2   containerd 1.7.24\n" +
				"wrk2     worker-2    Down     Drain                           10.0.0.3   containerd (unavailable)\n",
			wantRequests: []string{"GET /v1/nodes", "GET /v1/info"},
		},
		{
			name:         "node ls -q",
			args:         []string{"node", "ls", "-q"},
			wantStdout:   "mgr1\nwrk1\nwrk2\n",
			wantRequests: []string{"GET /v1/nodes"},
		},
		{
			name:       "info",
			args:       []string{"info", "--format", "json"},
			wantStdout: "{\n    \"node_id\": \"mgr1\",\n",
		},
		{
			name:       "inspect with one missing",
			args:       []string{"node", "inspect", "worker-1", "nope"},
			wantCode:   1,
			wantStdout: "[\n    {\n        \"id\": \"wrk1\",",
			wantStderr: "Error: no such node: nope\n",
		},
		{
			name:         "promote two",
			args:         []string{"node", "promote", "wrk1", "wrk2"},
			wantStdout:   "Node wrk1 promoted to a manager in the cluster.\nNode wrk2 promoted to a manager in the cluster.\n",
			wantRequests: []string{"POST /v1/nodes/wrk1/promote", "POST /v1/nodes/wrk2/promote"},
		},
		{
			name:         "demote, one failing",
			args:         []string{"node", "demote", "nope", "mgr1"},
			wantCode:     1,
			wantStdout:   "Manager mgr1 demoted in the cluster.\n",
			wantStderr:   "Error: no such node: nope\n",
			wantRequests: []string{"POST /v1/nodes/nope/demote", "POST /v1/nodes/mgr1/demote"},
		},
		{
			name:         "rm --force",
			args:         []string{"node", "rm", "--force", "wrk2"},
			wantStdout:   "wrk2\n",
			wantRequests: []string{"DELETE /v1/nodes/wrk2?force=1"},
		},
		{
			name:         "update",
			args:         []string{"node", "update", "--availability", "drain", "--label-add", "zone=a", "--label-rm", "old", "wrk1"},
			wantStdout:   "wrk1\n",
			wantRequests: []string{"POST /v1/nodes/wrk1/update"},
		},
		{
			name:         "join-token worker",
			args:         []string{"join-token", "worker"},
			wantStdout:   "To add a worker to this cluster, run:\n\n    shoal join --token SWT-1 10.0.0.1:2377\n\n",
			wantRequests: []string{"GET /v1/join-tokens", "GET /v1/info"},
		},
		{
			name:         "join-token manager -q",
			args:         []string{"join-token", "-q", "manager"},
			wantStdout:   "SMT-1\n",
			wantRequests: []string{"GET /v1/join-tokens"},
		},
		{
			name: "join-token --rotate",
			args: []string{"join-token", "--rotate", "manager"},
			wantStdout: "Rotated the manager join token: the old one no longer works.\n\n" +
				"To add a manager to this cluster, run:\n\n    shoal join --token SMT-2 10.0.0.1:2377\n\n",
			wantRequests: []string{"POST /v1/join-tokens/rotate?role=manager", "GET /v1/info"},
		},
		{
			name:       "leave refused",
			args:       []string{"leave"},
			wantCode:   1,
			wantStderr: "Error: this node is a manager: use --force\n",
		},
		{
			name:         "leave --force",
			args:         []string{"leave", "--force"},
			wantStdout:   "Node left the cluster.\n",
			wantRequests: []string{"POST /v1/leave?force=1"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := newStubDaemon(t)
			ta := newTestApp(t, nil)
			code := ta.run(append([]string{"-H", "unix://" + d.sock}, tt.args...)...)
			if code != tt.wantCode {
				t.Errorf("got exit code %d (stderr %q), want %d", code, ta.stderr.String(), tt.wantCode)
			}
			if got := ta.stdout.String(); !strings.HasPrefix(got, tt.wantStdout) {
				t.Errorf("got stdout\n%s\nwant it to start with\n%s", got, tt.wantStdout)
			}
			if got := ta.stderr.String(); got != tt.wantStderr {
				t.Errorf("got stderr %q, want %q", got, tt.wantStderr)
			}
			if tt.wantRequests != nil {
				if got := d.requestLog(); !reflect.DeepEqual(got, tt.wantRequests) {
					t.Errorf("got requests %q, want %q", got, tt.wantRequests)
				}
			}
		})
	}
}

func TestNodeLsJSON(t *testing.T) {
	d := newStubDaemon(t)
	ta := newTestApp(t, map[string]string{"SHOAL_HOST": "unix://" + d.sock})
	if code := ta.run("node", "ls", "--format", "json"); code != 0 {
		t.Fatalf("got exit code %d (stderr %q), want 0", code, ta.stderr.String())
	}
	var got []api.NodeView
	if err := json.Unmarshal([]byte(ta.stdout.String()), &got); err != nil {
		t.Fatalf("decode %q: %v", ta.stdout.String(), err)
	}
	var ids []string
	for _, n := range got {
		ids = append(ids, n.ID)
	}
	if want := []string{"mgr1", "wrk1", "wrk2"}; !reflect.DeepEqual(ids, want) {
		t.Errorf("got IDs %q, want %q (sorted by hostname)", ids, want)
	}
}

func TestNodeUpdateBody(t *testing.T) {
	d := newStubDaemon(t)
	ta := newTestApp(t, map[string]string{"SHOAL_HOST": "unix://" + d.sock})
	code := ta.run("node", "update", "--availability", "pause", "--label-add", "zone=a", "--label-add", "ssd=yes", "--label-rm", "old", "wrk1")
	if code != 0 {
		t.Fatalf("got exit code %d (stderr %q), want 0", code, ta.stderr.String())
	}
	want := []api.NodeUpdate{{
		Availability: api.AvailabilityPause,
		LabelAdd:     map[string]string{"zone": "a", "ssd": "yes"},
		LabelRm:      []string{"old"},
	}}
	d.mu.Lock()
	defer d.mu.Unlock()
	if !reflect.DeepEqual(d.updates, want) {
		t.Errorf("got updates %+v, want %+v", d.updates, want)
	}
}
