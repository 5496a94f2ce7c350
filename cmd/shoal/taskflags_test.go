package main

import (
	"reflect"
	"strings"
	"testing"

	"github.com/spf13/pflag"

	"github.com/shoal-dev/shoal/api"
)

func TestContainerFlagsOnCreate(t *testing.T) {
	tests := []struct {
		args []string
		want api.TaskSpec
		err  string
	}{
		{nil, api.TaskSpec{}, ""},
		{[]string{"--mount", "type=volume,source=pgdata,target=/var/lib/postgresql/data,volume-nocopy",
			"--mount", "type=bind,src=/srv/static,dst=/www,readonly",
			"--mount", "type=tmpfs,destination=/tmp,tmpfs-size=64m,tmpfs-mode=1770",
			"--mount", "source=cache,target=/cache,ro=false"},
			api.TaskSpec{Mounts: []api.Mount{
				{Type: api.MountVolume, Source: "pgdata", Target: "/var/lib/postgresql/data", VolumeNoCopy: true},
				{Type: api.MountBind, Source: "/srv/static", Target: "/www", ReadOnly: true},
				{Type: api.MountTmpfs, Target: "/tmp", TmpfsSize: 64 << 20, TmpfsMode: 0o1770},
				{Type: api.MountVolume, Source: "cache", Target: "/cache"},
			}}, ""},
		{[]string{"--entrypoint", "/bin/sh -c", "--hostname", "db1", "--group-add", "wheel", "--read-only", "--init",
			"--cap-add", "net_admin", "--cap-drop", "ALL", "--sysctl", "net.core.somaxconn=1024", "--ulimit", "nofile=1024:2048",
			"--ulimit", "nproc=64", "--stop-signal", "SIGINT", "--dns", "10.0.0.2", "--dns-search", "example", "--dns-option", "ndots:2",
			"--add-host", "db:10.0.0.5"},
			api.TaskSpec{Entrypoint: []string{"/bin/sh", "-c"}, Hostname: "db1", Groups: []string{"wheel"}, ReadOnly: true, Init: true,
				CapAdd: []string{"CAP_NET_ADMIN"}, CapDrop: []string{"ALL"}, Sysctls: map[string]string{"net.core.somaxconn": "1024"},
				Ulimits: []api.Ulimit{{Name: "nofile", Soft: 1024, Hard: 2048}, {Name: "nproc", Soft: 64, Hard: 64}}, StopSignal: "SIGINT",
				DNS:   &api.DNSConfig{Nameservers: []string{"10.0.0.2"}, Search: []string{"example"}, Options: []string{"ndots:2"}},
				Hosts: []string{"db:10.0.0.5"}}, ""},
		{[]string{"--mount", "type=tmpfs,target=tmp"}, api.TaskSpec{}, `mount target "tmp": want an absolute path`},
		{[]string{"--mount", "type=bind,target=/x,bind-propagation=shared"}, api.TaskSpec{}, "bind-propagation is not supported"},
		{[]string{"--mount", "type=tmpfs,target=/x,tmpfs-size=lots"}, api.TaskSpec{}, "tmpfs-size=lots"},
		{[]string{"--mount", "type=tmpfs,target=/x,tmpfs-mode=9"}, api.TaskSpec{}, "tmpfs-mode=9"},
		{[]string{"--mount", "type=volume,target=/x,colour=blue"}, api.TaskSpec{}, `unknown field "colour"`},
		{[]string{"--cap-add", "FLY"}, api.TaskSpec{}, "not a Linux capability"},
		{[]string{"--ulimit", "nofile=9:1"}, api.TaskSpec{}, "soft limit 9 is above the hard limit 1"},
		{[]string{"--ulimit", "nofile"}, api.TaskSpec{}, "want NAME=SOFT[:HARD]"},
		{[]string{"--sysctl", "vm.swappiness=1"}, api.TaskSpec{}, "not namespaced"},
		{[]string{"--stop-signal", "SIGNOPE"}, api.TaskSpec{}, `stop signal "SIGNOPE"`},
		{[]string{"--add-host", "db"}, api.TaskSpec{}, "want HOST:IP"},
		{[]string{"--tty"}, api.TaskSpec{TTY: true}, ""},
	}
	for _, tt := range tests {
		var f containerFlags
		fs := pflag.NewFlagSet("create", pflag.ContinueOnError)
		f.register(fs)
		if err := fs.Parse(tt.args); err != nil {
			t.Fatalf("parse %q: %v", tt.args, err)
		}
		var got api.TaskSpec
		err := f.apply(&got)
		switch {
		case tt.err != "":
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("%q: error %v, want %q", tt.args, err, tt.err)
			}
			if !reflect.DeepEqual(got, api.TaskSpec{}) {
				t.Errorf("%q: spec changed on error: %+v", tt.args, got)
			}
		case err != nil:
			t.Errorf("%q: %v", tt.args, err)
		case !reflect.DeepEqual(got, tt.want):
			t.Errorf("%q:\n got %+v\nwant %+v", tt.args, got, tt.want)
		}
	}
}

func TestContainerFlagsOnUpdate(t *testing.T) {
	cur := api.TaskSpec{
		User:    "app",
		Mounts:  []api.Mount{{Type: api.MountVolume, Source: "data", Target: "/data"}, {Type: api.MountTmpfs, Target: "/tmp"}},
		Groups:  []string{"wheel"},
		CapAdd:  []string{"CAP_NET_ADMIN"},
		CapDrop: []string{"CAP_CHOWN"},
		Sysctls: map[string]string{"net.core.somaxconn": "1024"},
		Ulimits: []api.Ulimit{{Name: "nofile", Soft: 1, Hard: 2}},
		DNS:     &api.DNSConfig{Nameservers: []string{"10.0.0.2"}},
		Hosts:   []string{"db:10.0.0.5", "cache:10.0.0.6"},
	}
	tests := []struct {
		args   []string
		change func(t *api.TaskSpec)
		err    string
	}{
		{nil, func(*api.TaskSpec) {}, ""},
		{[]string{"--mount-rm", "/tmp/", "--mount-add", "type=volume,source=other,target=/data"}, func(t *api.TaskSpec) {
			t.Mounts = []api.Mount{{Type: api.MountVolume, Source: "other", Target: "/data"}}
		}, ""},
		{[]string{"--cap-add", "chown", "--cap-drop", "NET_ADMIN"}, func(t *api.TaskSpec) {
			t.CapAdd, t.CapDrop = []string{"CAP_CHOWN"}, []string{"CAP_NET_ADMIN"}
		}, ""},
		{[]string{"--group-rm", "wheel", "--group-add", "video", "--read-only", "--user", "", "--workdir", "/srv", "--entrypoint", "/bin/app -v"}, func(t *api.TaskSpec) {
			t.Groups, t.ReadOnly, t.User, t.Workdir, t.Entrypoint = []string{"video"}, true, "", "/srv", []string{"/bin/app", "-v"}
		}, ""},
		{[]string{"--sysctl-rm", "net.core.somaxconn", "--ulimit-rm", "nofile", "--ulimit-add", "nproc=10:20", "--dns-rm", "10.0.0.2", "--dns-search-add", "example"}, func(t *api.TaskSpec) {
			t.Sysctls, t.Ulimits, t.DNS = nil, []api.Ulimit{{Name: "nproc", Soft: 10, Hard: 20}}, &api.DNSConfig{Search: []string{"example"}}
		}, ""},
		{[]string{"--host-rm", "db", "--host-add", "web:10.0.0.7", "--stop-signal", "SIGQUIT", "--hostname", "h1"}, func(t *api.TaskSpec) {
			t.Hosts, t.StopSignal, t.Hostname = []string{"cache:10.0.0.6", "web:10.0.0.7"}, "SIGQUIT", "h1"
		}, ""},
		{[]string{"--mount-rm", "/nowhere"}, nil, `--mount-rm "/nowhere": the service has no mount there`},
		{[]string{"--ulimit-add", "nofile=5:1"}, nil, "soft limit 5 is above"},
		{[]string{"--sysctl-add", "kernel.panic=1"}, nil, "not namespaced"},
		{[]string{"--mount-add", "type=bind,source=rel,target=/x"}, nil, "needs source=ABSOLUTE-PATH"},
	}
	for _, tt := range tests {
		var f updateContainerFlags
		fs := pflag.NewFlagSet("update", pflag.ContinueOnError)
		f.register(fs)
		if err := fs.Parse(tt.args); err != nil {
			t.Fatalf("parse %q: %v", tt.args, err)
		}
		got := cur.Clone()
		err := f.apply(&got)
		want := cur.Clone()
		if tt.change != nil {
			tt.change(&want)
		}
		switch {
		case tt.err != "":
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("%q: error %v, want %q", tt.args, err, tt.err)
			}
			if !reflect.DeepEqual(got, cur) {
				t.Errorf("%q: spec changed on error: %+v", tt.args, got)
			}
		case err != nil:
			t.Errorf("%q: %v", tt.args, err)
		case !reflect.DeepEqual(got, want):
			t.Errorf("%q:\n got %+v\nwant %+v", tt.args, got, want)
		}
	}
}
