package api_test

import (
	"slices"
	"strings"
	"testing"

	"github.com/shoal-dev/shoal/api"
)

func TestValidateRuntime(t *testing.T) {
	tests := []struct {
		name string
		spec api.TaskSpec
		msg  string // "" accepts
	}{
		{"empty", api.TaskSpec{}, ""},
		{"every field", api.TaskSpec{
			Mounts: []api.Mount{
				{Type: api.MountVolume, Source: "data", Target: "/data", VolumeNoCopy: true},
				{Type: api.MountBind, Source: "/srv", Target: "/www", ReadOnly: true},
				{Type: api.MountTmpfs, Target: "/tmp", TmpfsSize: 64 << 20, TmpfsMode: 0o700},
			},
			Entrypoint: []string{"/bin/sh", "-c"}, Hostname: "db-1.example", Groups: []string{"wheel", "10"},
			CapAdd: []string{"net_admin"}, CapDrop: []string{"CAP_CHOWN"},
			Sysctls:    map[string]string{"net.core.somaxconn": "1024", "kernel.shmmax": "1", "fs.mqueue.msg_max": "10"},
			Ulimits:    []api.Ulimit{{Name: "nofile", Soft: 1024, Hard: 2048}, {Name: "memlock", Soft: -1, Hard: -1}},
			StopSignal: "SIGINT", DNS: &api.DNSConfig{Nameservers: []string{"10.0.0.2", "fd00::2"}, Search: []string{"example"}, Options: []string{"ndots:2"}},
			Hosts: []string{"db:10.0.0.5", "10.0.0.6 cache cache.local", "v6:fd00::1"},
		}, ""},
		{"relative target", api.TaskSpec{Mounts: []api.Mount{{Type: api.MountTmpfs, Target: "tmp"}}}, `mount target "tmp": want an absolute path`},
		{"root target", api.TaskSpec{Mounts: []api.Mount{{Type: api.MountTmpfs, Target: "/"}}}, "cannot mount over the container's root"},
		{"two mounts at one target", api.TaskSpec{Mounts: []api.Mount{{Type: api.MountTmpfs, Target: "/t"}, {Type: api.MountTmpfs, Target: "/t/"}}}, "more than one mount there"},
		{"bad type", api.TaskSpec{Mounts: []api.Mount{{Type: "npipe", Target: "/t"}}}, `type "npipe": want volume, bind or tmpfs`},
		{"anonymous volume", api.TaskSpec{Mounts: []api.Mount{{Type: api.MountVolume, Target: "/t"}}}, "needs source=NAME"},
		{"bad volume name", api.TaskSpec{Mounts: []api.Mount{{Type: api.MountVolume, Source: "../x", Target: "/t"}}}, `volume name "../x"`},
		{"relative bind", api.TaskSpec{Mounts: []api.Mount{{Type: api.MountBind, Source: "srv", Target: "/t"}}}, "needs source=ABSOLUTE-PATH"},
		{"tmpfs source", api.TaskSpec{Mounts: []api.Mount{{Type: api.MountTmpfs, Source: "x", Target: "/t"}}}, "takes no source"},
		{"tmpfs mode", api.TaskSpec{Mounts: []api.Mount{{Type: api.MountTmpfs, Target: "/t", TmpfsMode: 0o17777}}}, "tmpfs-mode 17777"},
		{"nocopy on bind", api.TaskSpec{Mounts: []api.Mount{{Type: api.MountBind, Source: "/s", Target: "/t", VolumeNoCopy: true}}}, "volume-nocopy is only for type=volume"},
		{"tmpfs size on volume", api.TaskSpec{Mounts: []api.Mount{{Type: api.MountVolume, Source: "v", Target: "/t", TmpfsSize: 1}}}, "only for type=tmpfs"},
		{"bad capability", api.TaskSpec{CapAdd: []string{"NET_FLY"}}, `capability "NET_FLY": not a Linux capability`},
		{"added and dropped", api.TaskSpec{CapAdd: []string{"chown"}, CapDrop: []string{"CAP_CHOWN"}}, "CAP_CHOWN: both added and dropped"},
		{"bad ulimit name", api.TaskSpec{Ulimits: []api.Ulimit{{Name: "files", Soft: 1, Hard: 1}}}, `ulimit "files": unknown name`},
		{"soft above hard", api.TaskSpec{Ulimits: []api.Ulimit{{Name: "nofile", Soft: 10, Hard: 5}}}, "soft limit 10 is above the hard limit 5"},
		{"ulimit twice", api.TaskSpec{Ulimits: []api.Ulimit{{Name: "nofile", Soft: 1, Hard: 1}, {Name: "nofile", Soft: 2, Hard: 2}}}, "given twice"},
		{"bad sysctl name", api.TaskSpec{Sysctls: map[string]string{"net core": "1"}}, `sysctl "net core": want a name`},
		{"host sysctl", api.TaskSpec{Sysctls: map[string]string{"vm.swappiness": "1"}}, "not namespaced"},
		{"bad signal", api.TaskSpec{StopSignal: "SIGFOO"}, `stop signal "SIGFOO"`},
		{"bad host", api.TaskSpec{Hosts: []string{"db"}}, `host "db": want HOST:IP`},
		{"bad host ip", api.TaskSpec{Hosts: []string{"db:10.0.0"}}, `not an IP address`},
		{"bad nameserver", api.TaskSpec{DNS: &api.DNSConfig{Nameservers: []string{"dns.example"}}}, "want a nameserver's IP address"},
		{"bad hostname", api.TaskSpec{Hostname: "a_b"}, `hostname "a_b"`},
		{"bad group", api.TaskSpec{Groups: []string{"a:b"}}, `group "a:b"`},
		{"empty entrypoint", api.TaskSpec{Entrypoint: []string{""}}, "entrypoint: the first word must not be empty"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.spec.ValidateRuntime()
			switch {
			case tt.msg == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case tt.msg != "" && err == nil:
				t.Fatalf("accepted, want %q", tt.msg)
			case tt.msg != "" && !strings.Contains(err.Error(), tt.msg):
				t.Fatalf("error %q, want %q in it", err, tt.msg)
			}
		})
	}
}

func TestValidateRuntimeNormalizesCapabilities(t *testing.T) {
	s := api.TaskSpec{CapAdd: []string{"net_admin", "Sys_Time", "all"}, CapDrop: []string{"CAP_MKNOD"}}
	if err := s.ValidateRuntime(); err != nil {
		t.Fatal(err)
	}
	if want := []string{"CAP_NET_ADMIN", "CAP_SYS_TIME", "ALL"}; !slices.Equal(s.CapAdd, want) {
		t.Fatalf("cap add %q, want %q", s.CapAdd, want)
	}
}

func TestProcessArgs(t *testing.T) {
	img, cmd := []string{"/entry"}, []string{"serve"}
	tests := []struct {
		name string
		spec api.TaskSpec
		want []string
	}{
		{"image's", api.TaskSpec{}, []string{"/entry", "serve"}},
		{"command replaces the cmd only", api.TaskSpec{Command: []string{"sh", "-c", "x"}}, []string{"/entry", "sh", "-c", "x"}},
		{"entrypoint, no command", api.TaskSpec{Entrypoint: []string{"/bin/echo"}}, []string{"/bin/echo"}},
		{"entrypoint and args", api.TaskSpec{Entrypoint: []string{"/bin/echo", "-n"}, Command: []string{"hi"}}, []string{"/bin/echo", "-n", "hi"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.spec.ProcessArgs(img, cmd); !slices.Equal(got, tt.want) {
				t.Fatalf("args %q, want %q", got, tt.want)
			}
		})
	}
}

func TestParseHost(t *testing.T) {
	for _, tt := range []struct {
		in, ip string
		names  []string
	}{
		{"db:10.0.0.5", "10.0.0.5", []string{"db"}},
		{"v6:fd00::1", "fd00::1", []string{"v6"}},
		{"10.0.0.6 cache cache.local", "10.0.0.6", []string{"cache", "cache.local"}},
	} {
		ip, names, err := api.ParseHost(tt.in)
		if err != nil || ip.String() != tt.ip || !slices.Equal(names, tt.names) {
			t.Errorf("ParseHost(%q) = %v %q %v, want %s %q", tt.in, ip, names, err, tt.ip, tt.names)
		}
	}
}
