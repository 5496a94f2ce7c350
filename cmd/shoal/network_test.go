package main

import (
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"

	"github.com/shoal-dev/shoal/api"
)

func TestParsePublish(t *testing.T) {
	tests := []struct {
		in      string
		want    api.PortConfig
		wantErr string
	}{
		{in: "8080:80", want: api.PortConfig{Published: 8080, Target: 80, Protocol: "tcp"}},
		{in: "53:5353/udp", want: api.PortConfig{Published: 53, Target: 5353, Protocol: "udp"}},
		{in: "443:8443/TCP", want: api.PortConfig{Published: 443, Target: 8443, Protocol: "tcp"}},
		{in: "65535:1", want: api.PortConfig{Published: 65535, Target: 1, Protocol: "tcp"}},
		{in: "80", wantErr: `--publish "80": want [IP:]PUBLISHED:TARGET`},
		{in: "8080:80/sctp", wantErr: `protocol "sctp": want tcp or udp`},
		{in: "0:80", wantErr: `published port "0": want a number from 1 to 65535`},
		{in: "8080:70000", wantErr: `target port "70000": want a number`},
		{in: ":80", wantErr: `published port "": want a number`},
		{in: "a:b", wantErr: `published port "a"`},
		{in: "10.0.0.5:8080:80", want: api.PortConfig{Published: 8080, Target: 80, Protocol: "tcp", PublishedIP: "10.0.0.5"}},
		{in: "0.0.0.0:8080:80/udp", want: api.PortConfig{Published: 8080, Target: 80, Protocol: "udp"}},
		{in: "1.2.3:80:80", wantErr: `published IP "1.2.3": not an IP address`},
		{in: "published=[::1]:80,target=80", wantErr: `only IPv4 addresses`},
		{in: "mode=host,published=443,target=8443", want: api.PortConfig{Published: 443, Target: 8443, Protocol: "tcp", PublishMode: "host"}},
		{in: "mode=host,published=53,target=53,protocol=udp", want: api.PortConfig{Published: 53, Target: 53, Protocol: "udp", PublishMode: "host"}},
		{in: "published=10.0.0.5:8080,target=80", want: api.PortConfig{Published: 8080, Target: 80, Protocol: "tcp", PublishedIP: "10.0.0.5"}},
		{in: "mode=host,published=443,target=8443,published_ip=10.0.0.5",
			want: api.PortConfig{Published: 443, Target: 8443, Protocol: "tcp", PublishMode: "host", PublishedIP: "10.0.0.5"}},
		{in: "mode=ingress,target=80,published=80", want: api.PortConfig{Published: 80, Target: 80, Protocol: "tcp", PublishMode: "ingress"}},
		{in: "mode=bridge,published=80,target=80", wantErr: `mode "bridge": want ingress or host`},
		{in: "mode=host,published=70000,target=80", wantErr: `published port "70000": want a number from 1 to 65535`},
		{in: "mode=host,published=80", wantErr: `target is required`},
		{in: "mode=host,target=80", wantErr: `published is required`},
		{in: "published=80,target=80,size=1", wantErr: `unknown key "size"`},
		{in: "published=10.0.0.5:80,target=80,published_ip=10.0.0.6", wantErr: `published_ip given twice`},
		{in: "published=300.0.0.5:80,target=80", wantErr: `published IP "300.0.0.5"`},
		{in: "published=80,target", wantErr: `"target": want KEY=VALUE`},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := parsePublish(tt.in)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("got %+v, %v, want error %q", got, err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("got %+v, %v, want %+v", got, err, tt.want)
			}
		})
	}
}

func TestServiceCreateEndpointFlags(t *testing.T) {
	base := api.ServiceSpec{Name: "web", Mode: api.ModeReplicated, Replicas: 1, Task: api.TaskSpec{Image: "nginx"}}
	with := func(fn func(s *api.ServiceSpec)) api.ServiceSpec {
		s := base
		fn(&s)
		return s
	}
	tests := []struct {
		name    string
		args    []string // after "service create --name web"
		want    api.ServiceSpec
		wantErr string
	}{
		{name: "networks", args: []string{"--network", "appnet", "--network", "backnet", "nginx"},
			want: with(func(s *api.ServiceSpec) { s.Networks = []string{"appnet", "backnet"} })},
		{name: "publish", args: []string{"--publish", "8080:80", "-p", "53:53/udp", "nginx"},
			want: with(func(s *api.ServiceSpec) {
				s.Endpoint.Ports = []api.PortConfig{{Published: 8080, Target: 80, Protocol: "tcp"}, {Published: 53, Target: 53, Protocol: "udp"}}
			})},
		{name: "dnsrr", args: []string{"--endpoint-mode", "dnsrr", "--network", "appnet", "nginx"},
			want: with(func(s *api.ServiceSpec) { s.Endpoint.Mode = api.EndpointDNSRR; s.Networks = []string{"appnet"} })},
		{name: "vip", args: []string{"--endpoint-mode", "vip", "-p", "80:80", "nginx"},
			want: with(func(s *api.ServiceSpec) {
				s.Endpoint = api.EndpointSpec{Mode: api.EndpointVIP, Ports: []api.PortConfig{{Published: 80, Target: 80, Protocol: "tcp"}}}
			})},
		{name: "host mode with dnsrr", args: []string{"--endpoint-mode", "dnsrr", "-p", "mode=host,published=443,target=8443", "nginx"},
			want: with(func(s *api.ServiceSpec) {
				s.Endpoint = api.EndpointSpec{Mode: api.EndpointDNSRR, Ports: []api.PortConfig{{Published: 443, Target: 8443, Protocol: "tcp", PublishMode: "host"}}}
			})},
		{name: "one port on two addresses", args: []string{"-p", "10.0.0.5:80:80", "-p", "10.0.0.6:80:80", "nginx"},
			want: with(func(s *api.ServiceSpec) {
				s.Endpoint.Ports = []api.PortConfig{{Published: 80, Target: 80, Protocol: "tcp", PublishedIP: "10.0.0.5"}, {Published: 80, Target: 80, Protocol: "tcp", PublishedIP: "10.0.0.6"}}
			})},
		{name: "host ports clash", args: []string{"-p", "mode=host,published=443,target=1", "-p", "mode=host,published=443,target=2,published_ip=10.0.0.5", "nginx"},
			wantErr: "clashes with port"},
		{name: "flags after the image are the command's", args: []string{"nginx", "--network", "x"},
			want: with(func(s *api.ServiceSpec) { s.Task.Command = []string{"--network", "x"} })},

		{name: "bad endpoint mode", args: []string{"--endpoint-mode", "rr", "nginx"}, wantErr: `--endpoint-mode "rr": want vip or dnsrr`},
		{name: "dnsrr cannot publish", args: []string{"--endpoint-mode", "dnsrr", "-p", "80:80", "nginx"}, wantErr: "--publish needs --endpoint-mode vip"},
		{name: "bad publish", args: []string{"-p", "80", "nginx"}, wantErr: `--publish "80": want [IP:]PUBLISHED:TARGET`},
		{name: "publish twice", args: []string{"-p", "80:80", "-p", "80:81/tcp", "nginx"},
			wantErr: `--publish "80:81/tcp": port 80/tcp is already published by --publish "80:80"`},
		{name: "empty network", args: []string{"--network", "", "nginx"}, wantErr: `--network "": want a network name`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := newStubDaemon(t)
			d.setup(func(s *stubServices) { s.services = nil })
			ta := newTestApp(t, nil)
			code := ta.runOn(d, append([]string{"service", "create", "--name", "web"}, tt.args...)...)
			d.mu.Lock()
			created := d.created
			d.mu.Unlock()
			if tt.wantErr != "" {
				if code != 1 || !strings.Contains(ta.stderr.String(), tt.wantErr) {
					t.Errorf("got exit %d, stderr %q, want 1 and an error holding %q", code, ta.stderr.String(), tt.wantErr)
				}
				if len(created) != 0 {
					t.Errorf("created %+v, want nothing", created)
				}
				return
			}
			if code != 0 || len(created) != 1 {
				t.Fatalf("got exit %d (stderr %q), %d created, want 0 and one", code, ta.stderr.String(), len(created))
			}
			if !reflect.DeepEqual(created[0], tt.want) {
				t.Errorf("got spec\n%+v\nwant\n%+v", created[0], tt.want)
			}
		})
	}
}

// networkStub is a daemon that serves the network calls only.
type networkStub struct {
	sock     string
	mu       sync.Mutex
	networks []api.Network
	created  []api.NetworkSpec
	removed  []string
}

func newNetworkStub(t *testing.T) *networkStub {
	t.Helper()
	dir, err := os.MkdirTemp("", "shoal")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	s := &networkStub{sock: filepath.Join(dir, "shoal.sock"), networks: []api.Network{
		{ID: testID("zz1ngr3ss"), Spec: api.NetworkSpec{Name: "ingress", Subnet: "10.255.0.0/16", Ingress: true}, VNI: 4096, Gateway: "10.255.0.1"},
		{ID: testID("aa4ppn3t"), Spec: api.NetworkSpec{Name: "appnet", Subnet: "10.10.0.0/24", Attachable: true}, VNI: 4097, Gateway: "10.10.0.1"},
	}}
	answer := func(w http.ResponseWriter, code int, v any) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(code)
		_ = json.NewEncoder(w).Encode(v)
	}
	find := func(ref string) (int, bool) {
		for i, n := range s.networks {
			if n.ID == ref || n.Spec.Name == ref {
				return i, true
			}
		}
		return 0, false
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/networks", func(w http.ResponseWriter, r *http.Request) {
		var spec api.NetworkSpec
		if err := json.NewDecoder(r.Body).Decode(&spec); err != nil {
			answer(w, http.StatusBadRequest, api.Error{Message: err.Error()})
			return
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		s.created = append(s.created, spec)
		n := api.Network{ID: testID("n3wn3t"), Spec: spec, VNI: 4098}
		answer(w, http.StatusOK, n)
	})
	mux.HandleFunc("GET /v1/networks", func(w http.ResponseWriter, _ *http.Request) {
		s.mu.Lock()
		defer s.mu.Unlock()
		answer(w, http.StatusOK, s.networks)
	})
	mux.HandleFunc("GET /v1/networks/{ref}", func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		defer s.mu.Unlock()
		if i, ok := find(r.PathValue("ref")); ok {
			answer(w, http.StatusOK, s.networks[i])
			return
		}
		answer(w, http.StatusNotFound, api.Error{Message: `network "` + r.PathValue("ref") + `": store: not found`})
	})
	mux.HandleFunc("DELETE /v1/networks/{ref}", func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		defer s.mu.Unlock()
		if r.PathValue("ref") == "appnet" {
			answer(w, http.StatusBadRequest, api.Error{Message: "remove network: network appnet is used by service api"})
			return
		}
		if _, ok := find(r.PathValue("ref")); !ok {
			answer(w, http.StatusNotFound, api.Error{Message: `network "` + r.PathValue("ref") + `": store: not found`})
			return
		}
		s.removed = append(s.removed, r.PathValue("ref"))
		w.WriteHeader(http.StatusNoContent)
	})
	l, err := net.Listen("unix", s.sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(mux)
	srv.Listener.Close()
	srv.Listener = l
	srv.Start()
	t.Cleanup(srv.Close)
	return s
}

func TestNetworkVerbs(t *testing.T) {
	tests := []struct {
		name       string
		args       []string
		code       int
		stdout     string
		stderr     string
		created    []api.NetworkSpec
		removed    []string
		jsonLength int // for JSON output: array length, -1 for none
	}{
		{name: "create", args: []string{"network", "create", "backnet"}, stdout: testID("n3wn3t") + "\n",
			created: []api.NetworkSpec{{Name: "backnet"}}},
		{name: "create with flags", args: []string{"network", "create", "--subnet", "10.0.1.0/24", "--attachable", "--label", "team=a", "backnet"},
			stdout:  testID("n3wn3t") + "\n",
			created: []api.NetworkSpec{{Name: "backnet", Subnet: "10.0.1.0/24", Attachable: true, Labels: map[string]string{"team": "a"}}}},
		{name: "create needs a name", args: []string{"network", "create"}, code: 1, stderr: "accepts 1 arg(s), received 0"},
		{name: "create bad label", args: []string{"network", "create", "--label", "x", "n"}, code: 1, stderr: `--label "x": want KEY=VALUE`},
		{name: "ls", args: []string{"network", "ls"},
			stdout: "NETWORK ID     NAME      SUBNET          GATEWAY      VNI    OPTIONS\n" +
				"aa4ppn3t0000   appnet    10.10.0.0/24    10.10.0.1    4097   attachable\n" +
				"zz1ngr3ss000   ingress   10.255.0.0/16   10.255.0.1   4096   ingress\n"},
		{name: "ls -q", args: []string{"network", "ls", "-q"}, stdout: "aa4ppn3t0000\nzz1ngr3ss000\n"},
		{name: "ls json", args: []string{"network", "ls", "--format", "json"}, jsonLength: 2},
		{name: "ls bad format", args: []string{"network", "ls", "--format", "yaml"}, code: 1, stderr: `--format "yaml": want json`},
		{name: "inspect", args: []string{"network", "inspect", "appnet", "ingress"}, jsonLength: 2},
		{name: "inspect missing", args: []string{"network", "inspect", "appnet", "nope"}, code: 1,
			stderr: `Error: network "nope": store: not found`, jsonLength: 1},
		{name: "rm", args: []string{"network", "rm", "ingress"}, stdout: "ingress\n", removed: []string{"ingress"}},
		{name: "rm in use", args: []string{"network", "rm", "appnet", "ingress"}, code: 1, stdout: "ingress\n",
			stderr: "Error: remove network: network appnet is used by service api", removed: []string{"ingress"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newNetworkStub(t)
			ta := newTestApp(t, nil)
			code := ta.run(append([]string{"-H", "unix://" + s.sock}, tt.args...)...)
			if code != tt.code {
				t.Errorf("got exit %d (stderr %q), want %d", code, ta.stderr.String(), tt.code)
			}
			if tt.stderr != "" && !strings.Contains(ta.stderr.String(), tt.stderr) {
				t.Errorf("got stderr %q, want it to hold %q", ta.stderr.String(), tt.stderr)
			}
			switch {
			case tt.jsonLength > 0:
				var got []api.Network
				if err := json.Unmarshal([]byte(ta.stdout.String()), &got); err != nil || len(got) != tt.jsonLength {
					t.Errorf("got %q (%v), want a JSON array of %d networks", ta.stdout.String(), err, tt.jsonLength)
				}
			case ta.stdout.String() != tt.stdout:
				t.Errorf("got stdout\n%s\nwant\n%s", ta.stdout.String(), tt.stdout)
			}
			s.mu.Lock()
			defer s.mu.Unlock()
			if !reflect.DeepEqual(s.created, tt.created) {
				t.Errorf("got created %+v, want %+v", s.created, tt.created)
			}
			if !reflect.DeepEqual(s.removed, tt.removed) {
				t.Errorf("got removed %v, want %v", s.removed, tt.removed)
			}
		})
	}
}
